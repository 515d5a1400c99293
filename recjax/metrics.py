"""Recommendation metrics shared by the evaluator, the SeqIO metric fns and the baselines.

Pure numpy; no jax, no tensorflow. Conventions:

- Leave-one-out: every user has exactly ONE relevant item (the held-out target), so
  Hit@k = 1[rank < k] and NDCG@k = 1[rank < k] / log2(rank + 2) with a 0-based rank (IDCG = 1).
  Hit@k of leave-one-out equals Recall@k (TIGER, S3-Rec and P5 report it under either name).
- Ranked lists hold item indices (ints) or item ID strings, best first. A padding entry (an int
  < 0, "" or None) is "no prediction": it never matches a target and is not counted in
  `valid_id_rate`. If the target appears twice in a list, its first position counts.
- Every mean is over users; `per_user=True` gives the [users] array instead.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

RETRIEVAL_CUTOFFS = (5, 10)
RANKING_HR_CUTOFFS = (1, 5, 10)
RANKING_NDCG_CUTOFFS = (5, 10)

_NOT_FOUND = -1


def _as_ranked_matrix(ranked_ids: Any) -> np.ndarray:
    """[users, depth] array from an array or a ragged list of lists (short rows padded)."""
    if isinstance(ranked_ids, np.ndarray):
        if ranked_ids.ndim != 2:
            raise ValueError(f"ranked_ids must be 2-D [users, depth], got shape {ranked_ids.shape}")
        return ranked_ids
    rows = [list(r) for r in ranked_ids]
    depth = max((len(r) for r in rows), default=0)
    is_int = all(isinstance(x, (int, np.integer)) for r in rows for x in r)
    if is_int:
        out = np.full((len(rows), depth), -1, dtype=np.int64)
    else:
        out = np.full((len(rows), depth), "", dtype=object)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def _padding_mask(ranked: np.ndarray) -> np.ndarray:
    """[users, depth] bool: True where the entry is padding (int < 0, "" or None)."""
    if np.issubdtype(ranked.dtype, np.integer):
        return ranked < 0
    if ranked.dtype.kind in "US":
        return ranked == ""
    flat = [x is None or (isinstance(x, str) and x == "") or
            (isinstance(x, (int, np.integer)) and x < 0) for x in ranked.ravel()]
    return np.asarray(flat, dtype=bool).reshape(ranked.shape)


def target_ranks(ranked_ids: Any, target_ids: Any) -> np.ndarray:
    """0-based position of each user's target in its ranked list; -1 where absent.

    ranked_ids: [users, depth] (array or ragged list), best first.
    target_ids: [users].
    Returns int64 [users].
    """
    ranked = _as_ranked_matrix(ranked_ids)  # [users, depth]
    targets = np.asarray(target_ids)  # [users]
    if targets.ndim != 1 or targets.shape[0] != ranked.shape[0]:
        raise ValueError(
            f"target_ids must be [users] = [{ranked.shape[0]}], got shape {targets.shape}")
    if ranked.shape[1] == 0:
        return np.full(ranked.shape[0], _NOT_FOUND, dtype=np.int64)
    if ranked.dtype == object or targets.dtype == object:
        matches = np.array([[x == t for x in row] for row, t in zip(ranked, targets)],
                           dtype=bool).reshape(ranked.shape)
    else:
        matches = ranked == targets[:, None]  # [users, depth]
    matches &= ~_padding_mask(ranked)
    first = np.argmax(matches, axis=1)  # [users]; 0 where no match, fixed below
    return np.where(matches.any(axis=1), first, _NOT_FOUND).astype(np.int64)


def _hit_from_ranks(ranks: np.ndarray, k: int) -> np.ndarray:
    return ((ranks >= 0) & (ranks < k)).astype(np.float64)  # [users]


def _ndcg_from_ranks(ranks: np.ndarray, k: int) -> np.ndarray:
    hit = (ranks >= 0) & (ranks < k)
    # One relevant item: DCG = 1 / log2(rank + 2), IDCG = 1.
    return np.where(hit, 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0)  # [users]


def per_user_from_ranks(ranks: Any, kind: str = "retrieval") -> dict[str, np.ndarray]:
    """{metric: float64 [users]} from 0-based target ranks (-1: not returned): hit@5/10 and
    ndcg@5/10 for retrieval, hr@1/5/10 and ndcg@5/10 for ranking (the names `recjax eval` reports)."""
    ranks = np.asarray(ranks, np.int64)
    hits = RETRIEVAL_CUTOFFS if kind == "retrieval" else RANKING_HR_CUTOFFS
    name = "hit" if kind == "retrieval" else "hr"
    out = {f"{name}@{k}": _hit_from_ranks(ranks, k) for k in hits}
    out.update({f"ndcg@{k}": _ndcg_from_ranks(ranks, k) for k in RETRIEVAL_CUTOFFS})
    return out


def _check_k(k: int) -> None:
    if not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive int, got {k!r}")


def _reduce(values: np.ndarray, per_user: bool):
    if per_user:
        return values
    return float(values.mean()) if values.size else 0.0


def hit_at_k(ranked_ids: Any, target_ids: Any, k: int, per_user: bool = False):
    """Hit@k (= Recall@k with one relevant item): 1 if the target is in the first k entries.

    ranked_ids: [users, depth], best first; target_ids: [users]. Mean over users (float), or the
    [users] float64 array when per_user.
    """
    _check_k(k)
    return _reduce(_hit_from_ranks(target_ranks(ranked_ids, target_ids), k), per_user)


def ndcg_at_k(ranked_ids: Any, target_ids: Any, k: int, per_user: bool = False):
    """NDCG@k with one relevant item: 1 / log2(rank + 2) if the 0-based rank < k, else 0.

    ranked_ids: [users, depth], best first; target_ids: [users]. Mean over users (float), or the
    [users] float64 array when per_user.
    """
    _check_k(k)
    return _reduce(_ndcg_from_ranks(target_ranks(ranked_ids, target_ids), k), per_user)


def valid_id_rate(ranked_ids: Any, valid_ids: Iterable[Any]) -> float:
    """Fraction of the predicted (non-padding) entries of ranked_ids that are valid item IDs.

    ranked_ids: [users, depth]; valid_ids: the item IDs that exist (ints or strings). Padding is
    not a prediction and is left out of both counts; 0.0 when nothing was predicted.
    """
    ranked = _as_ranked_matrix(ranked_ids)  # [users, depth]
    predicted = ~_padding_mask(ranked)
    if not predicted.any():
        return 0.0
    valid = valid_ids if isinstance(valid_ids, (set, frozenset)) else set(valid_ids)
    entries = ranked[predicted]  # [num_predicted]
    if np.issubdtype(entries.dtype, np.integer):
        is_valid = np.isin(entries, np.fromiter((int(v) for v in valid), np.int64, len(valid)))
    else:
        is_valid = np.fromiter((x in valid for x in entries), bool, len(entries))
    return float(is_valid.mean())


def retrieval_metrics(ranked_ids: Any, target_ids: Any,
                      valid_ids: Iterable[Any] | None = None) -> dict[str, float]:
    """Top-k retrieval over all items, leave-one-out: hit@5, hit@10, ndcg@5, ndcg@10.

    ranked_ids: [users, depth >= 10 for full credit], best first; target_ids: [users].
    With valid_ids, also `valid_id_rate` (see `valid_id_rate`). Also `num_users`.
    """
    ranks = target_ranks(ranked_ids, target_ids)  # [users]
    out: dict[str, float] = {}
    for k in RETRIEVAL_CUTOFFS:
        out[f"hit@{k}"] = _reduce(_hit_from_ranks(ranks, k), False)
    for k in RETRIEVAL_CUTOFFS:
        out[f"ndcg@{k}"] = _reduce(_ndcg_from_ranks(ranks, k), False)
    if valid_ids is not None:
        out["valid_id_rate"] = valid_id_rate(ranked_ids, valid_ids)
    out["num_users"] = int(ranks.shape[0])
    return out


def ranks_from_candidate_scores(scores: Any, positive_index: Any) -> np.ndarray:
    """0-based rank of the positive among its candidates, ties broken PESSIMISTICALLY.

    scores: [users, candidates] (higher is better); positive_index: [users], the column of the
    positive. rank = #(others with score > positive) + #(others with score == positive): the
    positive is placed BELOW every candidate with an equal score, so a constant model gets rank
    candidates-1 (HR@k = 0), never a lucky rank 0. NaN scores are an error.
    Returns int64 [users].
    """
    scores = np.asarray(scores, dtype=np.float64)  # [users, candidates]
    pos = np.asarray(positive_index, dtype=np.int64)  # [users]
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D [users, candidates], got shape {scores.shape}")
    if pos.shape != (scores.shape[0],):
        raise ValueError(f"positive_index must be [users] = [{scores.shape[0]}], got {pos.shape}")
    if ((pos < 0) | (pos >= scores.shape[1])).any():
        raise ValueError(f"positive_index out of range [0, {scores.shape[1]})")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    pos_score = np.take_along_axis(scores, pos[:, None], axis=1)  # [users, 1]
    at_least = (scores >= pos_score).sum(axis=1)  # [users], includes the positive itself
    return (at_least - 1).astype(np.int64)


def ranking_metrics(scores: Any, positive_index: Any) -> dict[str, float]:
    """Candidate ranking (e.g. 1 positive + 99 sampled negatives): hr@1/5/10, ndcg@5/10.

    scores: [users, candidates], higher is better; positive_index: [users]. Ties are broken
    pessimistically (see `ranks_from_candidate_scores`). Also `num_users`.
    """
    ranks = ranks_from_candidate_scores(scores, positive_index)  # [users]
    out: dict[str, float] = {}
    for k in RANKING_HR_CUTOFFS:
        out[f"hr@{k}"] = _reduce(_hit_from_ranks(ranks, k), False)
    for k in RANKING_NDCG_CUTOFFS:
        out[f"ndcg@{k}"] = _reduce(_ndcg_from_ranks(ranks, k), False)
    out["num_users"] = int(ranks.shape[0])
    return out


def rating_metrics(pred: Any, true: Any) -> dict[str, float]:
    """Rating prediction: rmse and mae of pred against true (both [examples], finite)."""
    p = np.asarray(pred, dtype=np.float64).reshape(-1)  # [examples]
    t = np.asarray(true, dtype=np.float64).reshape(-1)  # [examples]
    if p.shape != t.shape:
        raise ValueError(f"pred has {p.size} values but true has {t.size}")
    if p.size == 0:
        raise ValueError("rating_metrics needs at least one example")
    if not (np.isfinite(p).all() and np.isfinite(t).all()):
        raise ValueError("rating_metrics got a non-finite value (parse failures must be "
                         "handled by the caller, e.g. mapped to a default rating)")
    err = p - t
    return {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err))),
            "num_examples": int(p.size)}


def rank_from_scores(scores: Any, exclude: Sequence[Any] | None = None, k: int = 10,
                     chunk_size: int = 1024) -> np.ndarray:
    """Top-k item indices per user from full-catalogue scores, with history exclusion.

    scores: [users, items], higher is better (numpy or anything np.asarray takes, e.g. a jax
      array); processed in chunks of `chunk_size` rows so the float32 working copy stays small.
    exclude: None, or one array of item indices per user (e.g. the user's history); those items
      get -inf and can never be recommended.
    Returns int64 [users, min(k, items)], best first. Ties are broken by the LOWER item index
    (deterministic). Slots with no finite-scored item left are -1 (padding).
    """
    _check_k(k)
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D [users, items], got shape {scores.shape}")
    num_users, num_items = scores.shape
    if exclude is not None and len(exclude) != num_users:
        raise ValueError(f"exclude has {len(exclude)} rows but scores has {num_users} users")
    k = min(k, num_items)
    out = np.empty((num_users, k), dtype=np.int64)  # [users, k]
    for start in range(0, num_users, chunk_size):
        stop = min(start + chunk_size, num_users)
        block = np.array(scores[start:stop], dtype=np.float32, copy=True)  # [chunk, items]
        if np.isnan(block).any():
            raise ValueError(f"scores contain NaN (rows {start}..{stop - 1})")
        if exclude is not None:
            cols = [np.asarray(e, dtype=np.int64).reshape(-1) for e in exclude[start:stop]]
            rows = np.repeat(np.arange(stop - start), [c.size for c in cols])
            cols = np.concatenate(cols) if cols else np.zeros(0, np.int64)
            if cols.size and (cols.min() < 0 or cols.max() >= num_items):
                raise ValueError(f"exclude holds an item index outside [0, {num_items})")
            block[rows, cols] = -np.inf
        out[start:stop] = _top_k_rows(block, k)
    return out


def _top_k_rows(block: np.ndarray, k: int) -> np.ndarray:
    """[rows, k] indices of the k largest entries per row; ties -> lower index; -inf -> -1."""
    rows = np.arange(block.shape[0])[:, None]
    part = np.argpartition(-block, k - 1, axis=1)[:, :k]  # [rows, k], unordered
    part_scores = block[rows, part]  # [rows, k]
    # argpartition picks arbitrarily among items tied with the k-th score; redo those rows over
    # the items scoring >= the k-th score (usually few) so the lower index wins.
    kth = part_scores.min(axis=1, keepdims=True)  # [rows, 1]
    tied = (block >= kth).sum(axis=1) > k  # [rows]
    order = np.lexsort((part, -part_scores), axis=1)  # [rows, k], by score desc then index
    top = np.take_along_axis(part, order, axis=1)
    for r in np.nonzero(tied)[0]:
        cand = np.nonzero(block[r] >= kth[r, 0])[0]  # ascending item index
        top[r] = cand[np.argsort(-block[r, cand], kind="stable")[:k]]
    top_scores = block[rows, top]
    top[np.isneginf(top_scores)] = -1
    return top
