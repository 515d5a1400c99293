"""Full-ranking leave-one-out evaluation shared by every baseline.

Protocol: every user's target is ranked against ALL items; the items of the user's history (the
input the model sees: seq[:-2] for valid, seq[:-1] for test) are excluded from the ranking, as in
SASRec's and BERT4Rec's own evaluation code minus their 100-negative sampling. In the prepared
Amazon data no user repeats an item, so the target is never an excluded item.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from recjax import metrics
from recjax.baselines.sequences import fixed_size_batches

TOP_K = 10


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
    for rows, real in tqdm(batches, desc="rank", leave=False, disable=not progress):
        scores = np.asarray(score_rows(rows))[:real]  # [real, items]
        exclude = [histories[r] for r in rows[:real]]
        out[rows[:real]] = metrics.rank_from_scores(scores, exclude, k=k)
    return out


def full_ranking_metrics(score_rows: Callable[[np.ndarray], np.ndarray], histories: Sequence[np.ndarray],
                         targets: np.ndarray, num_items: int, batch_size: int = 1024,
                         groups: Sequence[np.ndarray] | None = None,
                         progress: bool = False) -> dict[str, float]:
    """hit@5/10, ndcg@5/10 (+ valid_id_rate, num_users) of a scorer on a leave-one-out split."""
    top = top_items_full_ranking(score_rows, len(targets), histories, batch_size, groups=groups,
                                 progress=progress)
    return metrics.retrieval_metrics(top, targets, valid_ids=range(num_items))
