"""recjax.metrics against numbers computed by hand (written out below, not recomputed)."""
import numpy as np
import pytest

from recjax import metrics

# Three users, depth 10, item indices; -1 is padding.
RANKED = np.array([
    [7, 3, 5, 1, 2, 0, 4, 6, 8, 9],     # target 7 at rank 0
    [1, 2, 9, 4, 0, 3, 5, 6, 7, -1],    # target 9 at rank 2
    [0, 1, 2, 3, 4, 5, 6, 8, -1, -1],   # target 7 absent
])
TARGETS = np.array([7, 9, 7])


def test_hit_and_ndcg_hand_computed():
    # hit@1: only user 0 -> 1/3; hit@3: users 0, 1 -> 2/3.
    assert metrics.hit_at_k(RANKED, TARGETS, 1) == pytest.approx(1 / 3)
    assert metrics.hit_at_k(RANKED, TARGETS, 2) == pytest.approx(1 / 3)
    assert metrics.hit_at_k(RANKED, TARGETS, 3) == pytest.approx(2 / 3)
    # NDCG: rank 0 -> 1, rank 2 -> 1/log2(4) = 0.5, absent -> 0.
    np.testing.assert_allclose(metrics.ndcg_at_k(RANKED, TARGETS, 5, per_user=True), [1.0, 0.5, 0.0])
    assert metrics.ndcg_at_k(RANKED, TARGETS, 5) == pytest.approx(0.5)
    # k=2 cuts user 1's hit at rank 2.
    assert metrics.ndcg_at_k(RANKED, TARGETS, 2) == pytest.approx(1 / 3)


def test_ndcg_rank_one_and_nine():
    ranked = np.array([[5, 4, 3, 2, 1, 0, 6, 7, 8, 9]] * 2)
    # target 4 at rank 1: 1/log2(3) = 0.6309297535714575; target 9 at rank 9: 1/log2(11) = 0.28906482631.
    np.testing.assert_allclose(metrics.ndcg_at_k(ranked, [4, 9], 10, per_user=True),
                               [0.6309297535714575, 0.2890648263178879])
    np.testing.assert_allclose(metrics.ndcg_at_k(ranked, [4, 9], 5, per_user=True), [0.6309297535714575, 0.0])


def test_retrieval_metrics_strings_padding_and_valid_rate():
    ranked = [["a", "zz", "b"], ["c", ""], ["", "", ""], ["b", "b", "d"]]  # ragged; "" is padding
    targets = ["b", "c", "a", "b"]
    out = metrics.retrieval_metrics(ranked, targets, valid_ids={"a", "b", "c", "d"})
    # ranks: user0 "b" at 2, user1 "c" at 0, user2 absent, user3 "b" at 0 (first occurrence).
    assert out["hit@5"] == pytest.approx(3 / 4)
    assert out["hit@10"] == pytest.approx(3 / 4)
    assert out["ndcg@5"] == pytest.approx((0.5 + 1 + 0 + 1) / 4)
    assert out["ndcg@10"] == pytest.approx(0.625)
    # predicted (non-padding) entries: a zz b | c | - | b b d = 7, of which "zz" is invalid.
    assert out["valid_id_rate"] == pytest.approx(6 / 7)
    assert out["num_users"] == 4
    assert "valid_id_rate" not in metrics.retrieval_metrics(ranked, targets)


def test_padding_never_matches():
    # A target of -1 must not match -1 padding.
    assert metrics.hit_at_k(np.array([[-1, -1]]), np.array([-1]), 2) == 0.0


def test_valid_id_rate_ints():
    assert metrics.valid_id_rate(np.array([[0, 1, 12], [3, -1, -1]]), range(10)) == pytest.approx(3 / 4)


def test_ranking_metrics_pessimistic_ties():
    scores = np.array([
        [0.9, 0.1, 0.2, 0.3],   # positive (col 0) strictly best -> rank 0
        [0.5, 0.5, 0.5, 0.5],   # constant model: positive ranked below all 3 ties -> rank 3
        [0.2, 0.8, 0.2, 0.1],   # one better, one tie -> rank 2
    ])
    ranks = metrics.ranks_from_candidate_scores(scores, [0, 2, 2])
    np.testing.assert_array_equal(ranks, [0, 3, 2])
    out = metrics.ranking_metrics(scores, [0, 2, 2])
    assert out["hr@1"] == pytest.approx(1 / 3)
    assert out["hr@5"] == pytest.approx(1.0)
    # ndcg@5 = (1 + 1/log2(5) + 1/log2(4)) / 3 = (1 + 0.43067655807339306 + 0.5) / 3
    assert out["ndcg@5"] == pytest.approx((1 + 0.43067655807339306 + 0.5) / 3)


def test_constant_model_scores_zero_on_100_candidates():
    out = metrics.ranking_metrics(np.zeros((4, 100)), np.zeros(4, dtype=int))
    assert out["hr@10"] == 0.0 and out["ndcg@10"] == 0.0


def test_ranking_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        metrics.ranking_metrics(np.array([[np.nan, 1.0]]), [0])


def test_rating_metrics_hand_computed():
    out = metrics.rating_metrics([5, 3, 4], [4, 3, 2])
    # errors 1, 0, 2: mae = 1, rmse = sqrt(5/3) = 1.2909944487358056
    assert out["mae"] == pytest.approx(1.0)
    assert out["rmse"] == pytest.approx(1.2909944487358056)
    with pytest.raises(ValueError, match="non-finite"):
        metrics.rating_metrics([np.nan], [1])


def test_rank_from_scores_exclusion_ties_and_chunks():
    scores = np.array([
        [0.1, 0.9, 0.5, 0.9, 0.0],
        [1.0, 1.0, 1.0, 1.0, 1.0],
        [0.3, 0.2, 0.1, 0.0, 0.4],
    ], dtype=np.float32)
    exclude = [np.array([1]), np.array([], dtype=np.int64), np.array([4, 0, 1, 2])]
    top = metrics.rank_from_scores(scores, exclude, k=3, chunk_size=2)
    # user0: 1 excluded -> 3 (0.9), 2 (0.5), 0 (0.1). user1: all tied -> lowest indices 0, 1, 2.
    # user2: only item 3 left -> 3, then padding.
    np.testing.assert_array_equal(top, [[3, 2, 0], [0, 1, 2], [3, -1, -1]])
    np.testing.assert_array_equal(metrics.rank_from_scores(scores, None, k=2), [[1, 3], [0, 1], [4, 0]])


def test_rank_from_scores_matches_full_sort_on_random_scores():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(300, 500)).astype(np.float32)
    scores[:, :50] = 0.0  # many ties with the k-th score in some rows
    exclude = [rng.choice(500, size=rng.integers(0, 30), replace=False) for _ in range(300)]
    top = metrics.rank_from_scores(scores, exclude, k=10, chunk_size=64)
    masked = scores.copy()
    for u, e in enumerate(exclude):
        masked[u, e] = -np.inf
    expected = np.argsort(-masked, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(top, expected)
