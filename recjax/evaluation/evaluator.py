"""Metrics of a model on the recommendation tasks of a SeqIO task or mixture.

    from recjax.evaluation import evaluate, EvalOptions
    metrics = evaluate(model, params, "beauty_rec", "validation", options=EvalOptions(batch_size=64))
    # {"beauty_retrieval": {"hit@5": ..., "ndcg@10": ..., "valid_id_rate": 1.0, ...},
    #  "beauty_ranking": {"hr@1": ..., ...}, ...}

Per task kind, by its `TaskKind.evaluation` (auxiliary tasks of a mixture have none and are
skipped: their metrics are the recommendation tasks'):
- retrieval: beam search over ALL items (beam `beam_size`, top `top_k`), constrained to the trie
  of valid item IDs and excluding the user's history (`history_ids`) unless told otherwise;
  hit@5/10, ndcg@5/10 and `valid_id_rate` (1.0 when constrained) through the task's own SeqIO
  metric fn (`tasks.kinds.retrieval`'s, `tasks.metric_fns.retrieval_metric_fn`, which also drops history items from free
  generations).
- ranking: every candidate of `candidate_ids` scored by the log-likelihood of its ID as the
  target, encoder once per user; hr@1/5/10, ndcg@5/10 by `recjax.metrics.ranking_metrics` (ties
  pessimistic).
- rating: `rmse`/`mae` of the EXPECTED rating, sum_r r * p(r) over the five targets "1".."5"
  (each scored as a whole sequence, then normalized over the five), a better estimator than the
  generated string; with `rating_generated` also `generated_rmse`/`generated_mae`/
  `generated_parse_rate` of the greedily generated rating (unparsable -> 3, as the SeqIO metric
  fn does).

Sharding: the batch is split over the mesh's `data` axis (NamedSharding), params keep the
sharding they come with (a trainer's, per its rules) or are replicated. Every process builds the
same global batches; results are gathered to every process.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import gin
import jax
import numpy as np

from recjax import metrics as rec_metrics
from recjax import progress
from recjax.config import EOS_ID
from recjax.decoding import DecodeOptions, ItemDecoder, exclusion_matrix
from recjax.items.catalog import Catalog
from recjax.items.trie import ItemTrie
from recjax.decoding.beam_search import certified_exact
from recjax.decoding.best_first import BestFirstSearch
from recjax.decoding.candidate_scoring import score_candidates
from recjax.decoding.item_decoder import search_items
from recjax.model import EncoderDecoderModel
from recjax.partitioning import Partitioner
from recjax.model_inputs import decode_batches, num_batches

SEARCHES = ("beam", "exact")
RATING_VALUES = (1, 2, 3, 4, 5)


@gin.configurable(module="recjax.evaluation")
@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """batch_size: examples per global batch (a multiple of the mesh's data axis; the last batch
    is padded). inputs_length: encoder inputs longer than this are trimmed as seqio trims them
    (first length-1 tokens + EOS); None keeps them whole. Examples are sorted by length and each
    batch padded to the smallest bucket that fits it (32, 64, 128, then multiples of 64).
    max_examples: a seeded random sample of N examples of each task (seed `sample_seed`; the
    same users for every model evaluated with the same seed), never "the first N".
    search (retrieval): beam search returns top_k of the beam_size beams and reports
    `certified_exact@top_k`, the share of users whose top_k is PROVABLY the exact top_k by
    log-likelihood (the k-th returned item scores at least the best prefix the search dropped or
    left unexpanded; log-probabilities only fall along a path). "exact" then finds every user's
    top_k by best-first search over the trie (recjax.decoding.best_first, expanding
    `exact_prefixes_per_step` prefixes per user per step), so the metrics are those of exhaustive
    scoring, and adds `beam_recall@10` (share of the exact top-10 that the beam pass found),
    `mean_node_expansions` (prefixes expanded per user) and `exact_seconds`.
    The rest: see the module doc."""

    batch_size: int = 64
    ranking_batch_size: int = 16  # users per ranking batch: rows = users * candidates (100) per step
    # Retrieval's search (beam_size, top_k, constrained, exclude_history, alpha): bound in Gin as
    # recjax.decoding.DecodeOptions.* (they were EvalOptions.* before; the README says so).
    decode: DecodeOptions = dataclasses.field(default_factory=DecodeOptions)
    inputs_length: Optional[int] = None
    max_examples: Optional[int] = None
    sample_seed: int = 0
    search: str = "beam"  # retrieval: "beam" (beam_size), or "exact" (provably the top_k, see below)
    exact_prefixes_per_step: int = 8
    rating_generated: bool = True
    progress: bool = True

    def __post_init__(self):
        if self.batch_size < 1 or self.ranking_batch_size < 1:
            raise ValueError(f"EvalOptions.batch_size and ranking_batch_size must be >= 1, got {self.batch_size}, "
                             f"{self.ranking_batch_size}")
        if self.decode.top_k < 10:
            raise ValueError(f"DecodeOptions.top_k must be >= 10 for evaluation (hit@10 and ndcg@10), "
                             f"got {self.decode.top_k}")
        if self.search not in SEARCHES:
            raise ValueError(f"EvalOptions.search must be one of {SEARCHES}, got {self.search!r}")
        if self.search == "exact" and (self.decode.alpha != 0.0 or not self.decode.constrained):
            raise ValueError("EvalOptions.search='exact' needs constrained decoding with alpha = 0 (log-likelihood order)")
        if self.max_examples is not None and self.max_examples < 1:
            raise ValueError(f"EvalOptions.max_examples must be >= 1 or None, got {self.max_examples}")


@dataclasses.dataclass
class TaskResult:
    task: str
    kind: str
    metrics: dict[str, float]
    curves: dict[str, list[float]]  # e.g. "hit@k": [hit@1, ..., hit@top_k] (for the report's plot)
    num_examples: int
    seconds: float
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# The catalog of a registered dataset (recjax.items.catalog).
# ------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _catalog_cached(dataset_name: str, data_dir: str, vocab_size: int) -> Catalog:
    import tasks  # late: pulls in seqio / TensorFlow

    registered = tasks.registered(dataset_name)
    return Catalog.build(dataset_name, registered.builder.dataset, registered.tokenizer, vocab_size)


def catalog_of(dataset_name: str, vocab_size: int) -> Catalog:
    """The catalog of dataset NAME registered by `tasks.register_dataset` (trie built once)."""
    import tasks

    registered = tasks.registered(dataset_name)
    return _catalog_cached(dataset_name, registered.data_dir, vocab_size)


@dataclasses.dataclass(frozen=True)
class EvalTask:
    """A registered task as the evaluator needs it: its name and its kind's SeqIO postprocess and
    metric fns (what a seqio.Task would carry), from the task kind's entry; no SeqIO needed."""

    name: str
    dataset: str  # the registered dataset's name
    kind: Any  # tasks.TaskKind
    postprocess_fn: Any
    metric_fns: tuple


def eval_task(name: str) -> EvalTask:
    import tasks

    kind, registered = tasks.kind_of(name), tasks.dataset_of(name)
    return EvalTask(name, registered.name, kind, kind.postprocess_fn,
                    tuple(kind.metric_fns(registered.builder.dataset.item_ids)))


def _task_members(task_or_mixture) -> list[EvalTask]:
    """The tasks of a task or mixture (a name, or a seqio Task / Mixture), as EvalTasks."""
    import tasks

    name = task_or_mixture if isinstance(task_or_mixture, str) else task_or_mixture.name
    return [eval_task(task) for task, _ in tasks.mixture_members(name)]  # a one-line error if unknown


# ------------------------------------------------------------------------------------------------
# Examples (batches and placement: recjax.model_inputs).
# ------------------------------------------------------------------------------------------------

def sample_indices(n: int, max_examples: Optional[int], seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded random sample of `max_examples` of `n` examples (all if None or
    >= n): the same rows for every model evaluated with the same seed."""
    if max_examples is None or max_examples >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, n]).choice(n, size=max_examples, replace=False))


def load_examples(task, split: str, max_examples: Optional[int] = None, sample_seed: int = 0) -> list[dict]:
    """The task's examples of `split` in order (no shuffle), tokenized, untrimmed, with their
    features (`recjax.task_rows`: what the SeqIO task gives, without TensorFlow);
    with `max_examples`, a seeded random sample of them (`sample_indices`), in order. `task`: a
    name, an EvalTask or a seqio Task."""
    from recjax.task_rows import task_rows

    name = task if isinstance(task, str) else task.name
    import tasks

    if name in tasks.registered_names() and any(tasks.dataset_of(t).process_block for t, _ in tasks.mixture_members(name)):
        raise ValueError(f"{name}: registered with users='per_process' (each process holds its own users), which "
                         "trains only; evaluate with tasks.register_dataset.users='all' (recjax eval), or set "
                         "EVAL_PERIOD = 0 for the training run")
    out = list(task_rows(name, split))
    if not out:
        raise ValueError(f"task {name!r} has no {split!r} examples")
    return [out[i] for i in sample_indices(len(out), max_examples, sample_seed)]


# ------------------------------------------------------------------------------------------------
# Per task kind.
# ------------------------------------------------------------------------------------------------

def _progress(iterable, total: int, desc: str, enabled: bool):
    return progress.bar(iterable, total=total, desc=desc, unit="batch", leave=False,
                        disable=not enabled or jax.process_index() != 0)


def _decode_retrieval(model, params, examples, histories, catalog: Catalog, decode: DecodeOptions,
                      batch_size: int, inputs_length, place: Partitioner, width: int, desc: str, progress: bool):
    """Constrained / free decoding of every example: (items [n, top_k], log_probs [n, top_k],
    bound [n], free texts per row or None)."""
    decoder = _item_decoder(model, catalog.trie, decode)
    trie_arrays = place.replicate(catalog.trie.arrays_numpy()) if decode.constrained else None
    n, k = len(examples), decode.top_k
    items, log_probs, bound = np.full((n, k), -1, np.int64), np.full((n, k), -np.inf), np.full(n, -np.inf)
    texts: list[Optional[list[str]]] = [None] * n
    with jax.set_mesh(place.mesh):
        for rows, padded, enc in _progress(decode_batches(examples, batch_size, inputs_length),
                                           num_batches(n, batch_size), desc, progress):
            exclude = None
            if decode.exclude_history:
                exclude = place.shard_batch(exclusion_matrix([histories[r] for r in padded], width))
            out = place.fetch(decoder.search(params, place.shard_batch(enc), trie_arrays, exclude))
            for i, r in enumerate(rows):
                items[r], log_probs[r], bound[r] = out.items[i], out.log_probs[i], out.unexplored_bound[i]
                texts[r] = _ranked_ids(out, i, catalog, decode.constrained)
    return items, log_probs, bound, texts


def _evaluate_retrieval(model, params, task, examples, catalog: Catalog, options: EvalOptions,
                        place: Partitioner) -> tuple[dict, dict, dict]:
    decode = options.decode
    histories = [[catalog.index(i) for i in ex["history_ids"].split()] for ex in examples]
    width = max(8, -(-max(len(set(h)) for h in histories) // 8) * 8)  # one static shape per run
    items, log_probs, bound, predictions = _decode_retrieval(
        model, params, examples, histories, catalog, decode, options.batch_size, options.inputs_length, place,
        width, task.name, options.progress)
    k = decode.top_k
    extra_metrics = {}
    certified = None
    if decode.constrained and decode.alpha == 0.0:
        certified = certified_exact(log_probs, bound, k)  # [n], the beam pass's certificate
        extra_metrics[f"certified_exact@{k}"] = float(certified.mean())
        if options.search == "exact":
            predictions, exact_metrics = _exact_search(model, params, task.name, examples, histories, catalog, options,
                                                       place, items)
            extra_metrics.update(exact_metrics)
    # The task's own SeqIO metric fn, fed as T5X's evaluator feeds it.
    targets = [task.postprocess_fn(ex["targets_pretokenized"], example=ex, is_target=True) for ex in examples]
    predictions = [task.postprocess_fn(p, example=ex, is_target=False) for p, ex in zip(predictions, examples)]
    result: dict[str, float] = {}
    for fn in task.metric_fns:
        result.update(fn(targets, predictions))
    result.update(extra_metrics)
    ranked = [[p for p in pred if p not in set(t["history"])] for pred, t in zip(predictions, targets)]
    ranks = rec_metrics.target_ranks(ranked, [t["target"] for t in targets])
    curve = [float(np.mean((ranks >= 0) & (ranks < k))) for k in range(1, decode.top_k + 1)]
    rows = [{"user": int(ex["user"]), "target": t["target"], "target_rank": int(rank), "ranked": list(r)}
            for ex, t, rank, r in zip(examples, targets, ranks, ranked)]
    _add_original_ids(rows, catalog)
    if certified is not None:
        for row, c in zip(rows, certified.tolist()):
            row["certified_exact"] = bool(c)  # the beam's top_k is provably the exact one
    return result, {"hit@k": curve}, {"predictions": rows}


_SEARCHES: dict = {}


def _best_first(model: EncoderDecoderModel, trie: ItemTrie, top_k: int, per_step: int) -> BestFirstSearch:
    """One search per (model, catalog, k, step): its jitted calls compile once."""
    key = (model, id(trie), top_k, per_step)
    if key not in _SEARCHES:
        _SEARCHES[key] = BestFirstSearch(model, trie, top_k, per_step)
    return _SEARCHES[key]


def _exact_search(model, params, name: str, examples, histories, catalog: Catalog, options: EvalOptions,
                  place: Partitioner, beam_items: np.ndarray):
    """EvalOptions.search='exact': every user's top_k by best-first search over the trie
    (recjax.decoding.best_first: provably the k items of highest log-likelihood). Returns the
    ranked ID lists and beam_recall@10 (share of the exact top-10 that the beam pass found),
    mean_node_expansions (prefixes the search expanded per user), exact_seconds."""
    decode = options.decode
    search = _best_first(model, catalog.trie, decode.top_k, options.exact_prefixes_per_step)
    items = np.full((len(examples), decode.top_k), -1, np.int64)
    expansions = np.zeros(len(examples), np.int64)
    start = time.time()
    with jax.set_mesh(place.mesh):
        for rows, padded, enc in _progress(decode_batches(examples, options.batch_size, options.inputs_length),
                                           num_batches(len(examples), options.batch_size), f"{name} exact",
                                           options.progress):
            exclude = [histories[r] for r in padded] if decode.exclude_history else None
            out = search(params, enc, exclude, put=place.shard_batch, fetch=place.fetch)
            items[rows], expansions[rows] = out.items[:len(rows)], out.expansions[:len(rows)]
    seconds = time.time() - start
    predictions = [[catalog.item_ids[i] for i in row if i >= 0] for row in items]
    recall = [len(set(b[:10].tolist()) & set(e[:10].tolist()) - {-1}) / max(1, len(set(e[:10].tolist()) - {-1}))
              for b, e in zip(beam_items, items)]
    return predictions, {"beam_recall@10": float(np.mean(recall)), "mean_node_expansions": float(expansions.mean()),
                         "exact_seconds": seconds}


def _add_original_ids(rows: list[dict], catalog: Catalog) -> None:
    """`target_original_id`: the target under the dataset's original IDs, so that runs with
    different item-ID schemes can be compared user by user (`recjax compare`)."""
    if catalog.item_original_ids:
        for row in rows:
            index = catalog.index(row["target"])
            if index >= 0:
                row["target_original_id"] = catalog.item_original_ids[index]


_DECODERS: dict = {}


def _item_decoder(model: EncoderDecoderModel, trie: ItemTrie, options: DecodeOptions) -> ItemDecoder:
    """One jitted decoder per (model, catalog, options): periodic validation compiles once."""
    key = (model, id(trie), options)
    if key not in _DECODERS:
        _DECODERS[key] = ItemDecoder(model, trie, options)
    return _DECODERS[key]


def _ranked_ids(out, row: int, catalog: Catalog, constrained: bool) -> list[str]:
    """One user's decoded top-k as ID strings; free generations keep their text (invalid IDs
    count against valid_id_rate), empty slots are left out."""
    ranked = []
    for k in range(out.scores.shape[1]):
        if not np.isfinite(out.scores[row, k]):
            continue
        item = int(out.items[row, k])
        if item >= 0:
            ranked.append(catalog.item_ids[item])
        elif not constrained:
            ranked.append(catalog.decode(out.sequences[row, k]) or "<empty>")
    return ranked


@functools.lru_cache(maxsize=16)
def _scorer(model: EncoderDecoderModel):
    """`score_candidates` jitted once per model (a process-wide cache across evaluations)."""
    return jax.jit(functools.partial(score_candidates, model))


def _evaluate_ranking(model, params, task, examples, catalog: Catalog, options: EvalOptions,
                      place: Partitioner) -> tuple[dict, dict, dict]:
    from tasks import candidates_and_positive

    cands, positive = [], np.zeros(len(examples), np.int64)
    for e, ex in enumerate(examples):
        ids, positive[e] = candidates_and_positive(ex)
        index = [catalog.index(i) for i in ids]
        if min(index) < 0:
            raise ValueError(f"{task.name}: example {e} has a candidate that is not an item ID of {catalog.name!r}")
        cands.append(index)
    num_cand = len(cands[0])
    if any(len(c) != num_cand for c in cands):
        raise ValueError(f"{task.name}: examples have different numbers of candidates")
    cands = np.asarray(cands, np.int32)  # [examples, candidates]
    scores = np.zeros(cands.shape, np.float64)
    score = _scorer(model)
    size = options.ranking_batch_size
    with jax.set_mesh(place.mesh):
        for rows, padded, enc in _progress(decode_batches(examples, size, options.inputs_length),
                                           num_batches(len(examples), size), task.name, options.progress):
            tokens = catalog.trie.item_tokens[cands[padded]]  # [batch, candidates, depth]
            out = place.fetch(score(params, place.shard_batch(enc), place.shard_batch(tokens)))
            scores[rows] = out[:len(rows)]
    result = rec_metrics.ranking_metrics(scores, positive)
    ranks = rec_metrics.ranks_from_candidate_scores(scores, positive)
    curve = [float(np.mean(ranks < k)) for k in range(1, num_cand + 1)]
    rows = [{"user": int(ex["user"]), "target": catalog.item_ids[cands[e, positive[e]]], "target_rank": int(ranks[e]),
             "ranked": [catalog.item_ids[c] for c in cands[e][np.argsort(-scores[e], kind="stable")]]}
            for e, ex in enumerate(examples)]
    _add_original_ids(rows, catalog)
    return result, {"hr@k": curve}, {"predictions": rows}


def _rating_targets(catalog: Catalog) -> np.ndarray:
    """[5, length] token sequences of "1".."5" with EOS, 0-padded."""
    seqs = [catalog.tokenizer.EncodeAsIds(str(r)) + [EOS_ID] for r in RATING_VALUES]
    out = np.zeros((len(seqs), max(len(s) for s in seqs)), np.int32)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out


@functools.lru_cache(maxsize=16)
def _greedy(model: EncoderDecoderModel, max_decode_len: int):
    """Free greedy generation (beam 1, padding banned) jitted once per model and length."""
    options = DecodeOptions(beam_size=1, top_k=1, constrained=False, exclude_history=False)
    return jax.jit(functools.partial(search_items, model, trie=None, exclude=None, options=options,
                                     max_decode_len=max_decode_len))


def _evaluate_rating(model, params, task, examples, catalog: Catalog, options: EvalOptions,
                     place: Partitioner) -> tuple[dict, dict, dict]:
    from tasks import parse_rating, rating_metric_fn

    true = np.array([float(ex["targets_pretokenized"]) for ex in examples])
    candidates = _rating_targets(catalog)
    values = np.asarray(RATING_VALUES, np.float64)
    expected = np.zeros(len(examples))
    generated: list[Optional[float]] = [None] * len(examples)
    score = _scorer(model)
    greedy = _greedy(model, candidates.shape[1] + 2) if options.rating_generated else None
    with jax.set_mesh(place.mesh):
        for rows, padded, enc in _progress(decode_batches(examples, options.batch_size, options.inputs_length),
                                           num_batches(len(examples), options.batch_size), task.name,
                                           options.progress):
            enc_global = place.shard_batch(enc)
            tokens = np.broadcast_to(candidates, (len(padded),) + candidates.shape).copy()
            ll = place.fetch(score(params, enc_global, place.shard_batch(tokens)))[:len(rows)]  # [rows, 5]
            p = np.exp(ll - ll.max(axis=1, keepdims=True))
            expected[rows] = (p / p.sum(axis=1, keepdims=True)) @ values
            if greedy is not None:
                out = place.fetch(greedy(params, enc_global))
                for i, r in enumerate(rows):
                    generated[r] = parse_rating(catalog.decode(out.sequences[i, 0]))
    result = rec_metrics.rating_metrics(expected, true)
    extra = {"expected": expected.tolist(), "true": true.tolist()}
    if options.rating_generated:
        gen = rating_metric_fn(list(true), generated)
        result.update(generated_rmse=gen["rmse"], generated_mae=gen["mae"], generated_parse_rate=gen["rating_parse_rate"])
    return result, {}, extra


# TaskKind.evaluation -> how it is scored (tasks.kinds.EVALUATIONS).
_EVALUATORS = {"retrieval": _evaluate_retrieval, "ranking": _evaluate_ranking, "rating": _evaluate_rating}


# ------------------------------------------------------------------------------------------------
# Entry points.
# ------------------------------------------------------------------------------------------------

def evaluate_tasks(model: EncoderDecoderModel, params, task_or_mixture, split: str = "validation", *,
                   options: EvalOptions = EvalOptions(),
                   partitioner: Optional[Partitioner] = None) -> list[TaskResult]:
    """One TaskResult per recommendation task of `task_or_mixture` (a name, Task or Mixture).
    Batches are split over the partitioner's data axis (default: all devices, data parallel);
    params already on its mesh stay there, host params are replicated on it."""
    place = partitioner if partitioner is not None else Partitioner.create()
    place.check_batch(options.batch_size, "EvalOptions.batch_size")
    place.check_batch(options.ranking_batch_size, "EvalOptions.ranking_batch_size")
    params = place.place_params(params)
    results = []
    members = _task_members(task_or_mixture)
    for task in members:
        kind = task.kind
        if kind.evaluation is None:  # an auxiliary task: its metrics are the recommendation tasks'
            continue
        start = time.time()
        catalog = catalog_of(task.dataset, model.config.vocab_size)
        examples = load_examples(task, split, options.max_examples, options.sample_seed)
        metrics, curves, extra = _EVALUATORS[kind.evaluation](model, params, task, examples, catalog, options, place)
        metrics = {k: float(v) for k, v in metrics.items()}
        results.append(TaskResult(task.name, kind.name, metrics, curves, len(examples), time.time() - start, extra))
    if not results:
        names = ", ".join(t.name for t in members)
        raise ValueError(f"{getattr(task_or_mixture, 'name', task_or_mixture)}: no recommendation task "
                         f"(retrieval, ranking, rating) among {names}")
    return results


def evaluate(model: EncoderDecoderModel, params, task_or_mixture, split: str = "validation", *,
             options: EvalOptions = EvalOptions(),
             partitioner: Optional[Partitioner] = None) -> dict[str, dict[str, float]]:
    """{task name: {metric: value}} for the recommendation tasks of a task or mixture."""
    return {r.task: r.metrics for r in evaluate_tasks(model, params, task_or_mixture, split, options=options,
                                                      partitioner=partitioner)}


def flatten_metrics(metrics: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """{task: {metric: v}} -> {"task/metric": v} (what a trainer logs)."""
    return {f"{task}/{name}": float(v) for task, values in metrics.items() for name, v in values.items()}


@gin.configurable(module="recjax.evaluation")
class TrainEvaluator:
    """`train_lib.train(evaluator=...)`: called as evaluator(params=..., step=...) -> flat metrics.

    Gin: train_lib.train.evaluator = @evaluation.TrainEvaluator()
         evaluation.TrainEvaluator.mixture_or_task_name = %MIXTURE_OR_TASK_NAME
    """

    def __init__(self, model_config=gin.REQUIRED, mixture_or_task_name: str = gin.REQUIRED,
                 split: str = "validation", options: EvalOptions = EvalOptions(max_examples=1024),
                 mesh_shape: Sequence[int] = (-1, 1)):
        self.model = EncoderDecoderModel(model_config)
        self.mixture_or_task_name = mixture_or_task_name
        self.split, self.options = split, options
        self.partitioner = Partitioner.create(mesh_shape)

    def task_names(self) -> list[str]:
        """The tasks it scores (the recommendation tasks of its mixture)."""
        import tasks

        return [t for t, _ in tasks.mixture_members(self.mixture_or_task_name) if tasks.kind_of(t).evaluation]

    def __call__(self, *, params, step: int) -> dict[str, float]:
        del step
        return flatten_metrics(evaluate(self.model, params, self.mixture_or_task_name, self.split,
                                        options=self.options, partitioner=self.partitioner))
