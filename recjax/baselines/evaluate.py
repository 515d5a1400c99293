"""Full-ranking leave-one-out evaluation shared by every baseline.

Protocol: every user's target is ranked against ALL items; the items of the user's history (the
input the model sees: seq[:-2] for valid, seq[:-1] for test) are excluded from the ranking, as in
SASRec's and BERT4Rec's own evaluation code minus their 100-negative sampling. In the prepared
Amazon data no user repeats an item, so the target is never an excluded item.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from recjax import metrics
from recjax import progress as progress_bars
from recjax.baselines.sequences import fixed_size_batches

TOP_K = 10
PREDICTION_DEPTH = 20  # items per user in a predictions file (as recjax eval's top_k)


def top_items_full_ranking(score_rows: Callable[[np.ndarray], np.ndarray], num_users: int,
                           histories: Sequence[np.ndarray], batch_size: int = 1024,
                           k: int = TOP_K, groups: Sequence[np.ndarray] | None = None,
                           progress: bool = False) -> np.ndarray:
    """[users, k] best item indices; score_rows(rows [batch_size]) -> scores [batch_size, items].

    Batches have a fixed size (the last one of each group padded with the group's first row) and
    never mix `groups` (e.g. token-width buckets), so a jitted scorer compiles once per group.
    """
    groups = [np.arange(num_users)] if groups is None else [g for g in groups if len(g)]
    out = np.empty((num_users, k), dtype=np.int64)
    batches = [b for g in groups for b in fixed_size_batches(g, batch_size)]
    for rows, real in progress_bars.bar(batches, desc="rank", leave=False, disable=not progress):
        scores = np.asarray(score_rows(rows))[:real]  # [real, items]
        exclude = [histories[r] for r in rows[:real]]
        out[rows[:real]] = metrics.rank_from_scores(scores, exclude, k=k)
    return out


def full_ranking(score_rows: Callable[[np.ndarray], np.ndarray], histories: Sequence[np.ndarray],
                 targets: np.ndarray, num_items: int, batch_size: int = 1024,
                 groups: Sequence[np.ndarray] | None = None, progress: bool = False,
                 depth: int = TOP_K) -> tuple[dict[str, float], np.ndarray]:
    """(hit@5/10, ndcg@5/10 (+ valid_id_rate, num_users), [users, depth] best items) of a scorer on
    a leave-one-out split."""
    top = top_items_full_ranking(score_rows, len(targets), histories, batch_size, k=min(max(depth, TOP_K), num_items),
                                 groups=groups, progress=progress)
    return metrics.retrieval_metrics(top[:, :TOP_K], targets, valid_ids=range(num_items)), top


def full_ranking_metrics(*args, **kwargs) -> dict[str, float]:
    """The metrics of `full_ranking`."""
    return full_ranking(*args, **kwargs)[0]


def prediction_rows(task: str, top: np.ndarray, targets: np.ndarray, item_ids: Sequence[str],
                    original_ids: Sequence[str] | None = None) -> list[dict]:
    """`recjax eval --predictions` rows (what `recjax compare` reads) of a full ranking: per user
    the ranked item IDs, the target and its 0-based rank in them (-1 below the list)."""
    ranks = metrics.target_ranks(top, targets)
    rows = []
    for user, (items, target, rank) in enumerate(zip(top.tolist(), np.asarray(targets).tolist(), ranks.tolist())):
        row = {"task": task, "kind": "retrieval", "user": user, "target": item_ids[target], "target_rank": rank,
               "ranked": [item_ids[i] for i in items if i >= 0]}  # -1: no item left
        if original_ids is not None:
            row["target_original_id"] = original_ids[target]
        rows.append(row)
    return rows
