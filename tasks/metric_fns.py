"""SeqIO postprocessors and metric fns of the recommendation tasks (wrapping recjax.metrics).

Contract with the decoder / evaluator (seqio `predict_metric_fns`, `Evaluator` semantics):

- retrieval: the predict fn returns top-k decodes per example, `[batch, num_decodes, length]`
  tokens best first (seqio decodes each into a string, so a prediction is a `list[str]` of item
  IDs); `num_decodes >= 10` for full credit at @10. A 2-D top-1 output gives one string, which
  counts as a list of one. The user's history items (`history_ids` feature) are dropped from each
  list before ranking (the standard exclusion); `valid_id_rate` is measured on the raw list.
- ranking: predictions are the candidates in the model's order, best first (e.g. beam search
  constrained to the example's `candidate_ids`); candidates the model did not rank tie at the
  bottom, and ties count pessimistically. An evaluator that scores every candidate (log-likelihood
  of each candidate ID) calls `recjax.metrics.ranking_metrics(scores, positive_index)` directly,
  with `candidates_and_positive(example)`.
- rating: a prediction is the decoded string; it is parsed as a number, and one that does not
  parse counts as `RATING_FALLBACK` (reported as `rating_parse_rate`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from recjax import metrics

RATING_FALLBACK = 3.0  # the middle of the 1-5 scale, for outputs that are not a number


def _text(value: Any) -> str:
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8")
    return str(value)


def _ranked_list(output: Any) -> list[str]:
    """A decoded output -> item IDs best first (one string or a list of top-k decodes)."""
    if isinstance(output, (str, bytes, np.bytes_)):
        outputs = [output]
    else:
        outputs = list(output)
    return [_text(o).strip() for o in outputs]


def _example_ids(example: Any, key: str) -> list[str]:
    if example is None or key not in example:
        raise ValueError(f"the evaluator must pass the example (with its {key!r} feature) to postprocess_fn")
    return _text(example[key]).split()


def recommendation_postprocess(output: Any, example: Any = None, is_target: bool = False) -> Any:
    """Targets -> {"target", "history", "candidates"} from the example's features; predictions
    -> the ranked list of item-ID strings. Shared by retrieval, ranking, MIM and BPR."""
    if is_target:
        return {"target": _text(example["target_id"]) if example is not None else _text(output).strip(),
                "history": _example_ids(example, "history_ids") if example is not None else [],
                "candidates": _example_ids(example, "candidate_ids") if example is not None else []}
    return _ranked_list(output)


def retrieval_metric_fn(valid_ids: Sequence[str]) -> Callable[..., dict[str, float]]:
    """SeqIO predict metric fn: hit@5/10, ndcg@5/10 and valid_id_rate over all items."""
    valid = frozenset(valid_ids)

    def retrieval(targets: list[dict], predictions: list[list[str]]) -> dict[str, float]:
        raw = [list(p) for p in predictions]
        ranked = []
        for target, prediction in zip(targets, raw):
            seen = set(target["history"])
            ranked.append([p for p in prediction if p not in seen])
        out = metrics.retrieval_metrics(ranked, [t["target"] for t in targets])
        out["valid_id_rate"] = metrics.valid_id_rate(raw, valid)
        return out

    return retrieval


def candidates_and_positive(example: Any) -> tuple[list[str], int]:
    """The candidate IDs of a ranking example in the order shown, and the positive's index."""
    candidates = _example_ids(example, "candidate_ids")
    return candidates, candidates.index(_text(example["target_id"]))


def ranking_metric_fn(targets: list[dict], predictions: list[list[str]]) -> dict[str, float]:
    """SeqIO predict metric fn: hr@1/5/10, ndcg@5/10 from the model's order of the candidates."""
    scores = np.full((len(targets), max((len(t["candidates"]) for t in targets), default=0)), -np.inf)
    positive = np.zeros(len(targets), dtype=np.int64)
    for row, (target, prediction) in enumerate(zip(targets, predictions)):
        candidates = target["candidates"]
        positive[row] = candidates.index(target["target"])
        rank_of = {}
        for rank, item in enumerate(prediction):
            rank_of.setdefault(item, rank)
        for column, item in enumerate(candidates):
            # ranked candidates score -rank; unranked ones tie at the bottom (-inf - pessimistic)
            scores[row, column] = -rank_of[item] if item in rank_of else -1e9
    return metrics.ranking_metrics(scores, positive)


def parse_rating(output: Any) -> float | None:
    try:
        value = float(_text(output).strip())
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def rating_postprocess(output: Any, example: Any = None, is_target: bool = False) -> float | None:
    return parse_rating(output[0] if isinstance(output, (list, tuple)) else output)


def rating_metric_fn(targets: list[float], predictions: list[float | None]) -> dict[str, float]:
    """SeqIO predict metric fn: rmse, mae (unparsable predictions count as RATING_FALLBACK)."""
    parsed = [p is not None for p in predictions]
    values = [RATING_FALLBACK if p is None else p for p in predictions]
    out = metrics.rating_metrics(values, targets)
    out["rating_parse_rate"] = float(np.mean(parsed)) if parsed else 0.0
    return out
