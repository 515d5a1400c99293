"""Baselines: popularity equals hand-computed metrics; SASRec and BERT4Rec learn a synthetic
successor pattern far above popularity; width buckets do not change scores; the binary writes
metrics.json / report.md / config.gin / an orbax checkpoint and rejects bad gin before any work."""
import json

import gin
import jax
import numpy as np
import pytest

from recjax.cli import baseline
from recjax.baselines.bert4rec import BERT4Rec
from recjax.baselines.evaluate import full_ranking_metrics
from recjax.baselines.popularity import Popularity
from recjax.baselines.sasrec import SASRec
from recjax.baselines.sequences import left_pad
from recjax.baselines.train_loop import evaluate_model, restore_params, save_params, train_and_evaluate
from recjax.data.prepared import PreparedDataset, write_prepared_files
from recjax.partitioning import Partitioner


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def write_dataset(directory, sequences, num_items, name="hand"):
    ds = PreparedDataset(
        name=name, indexing="sequential", item_ids=[f"i{i}" for i in range(num_items)],
        item_titles=[f"item {i}" for i in range(num_items)], item_original_ids=[str(i) for i in range(num_items)],
        item_attributes=[[] for _ in range(num_items)], sequences=[np.asarray(s, np.int32) for s in sequences],
        ratings=None, timestamps=None, user_original_ids=[f"u{u}" for u in range(len(sequences))])
    directory.mkdir()
    write_prepared_files(ds, str(directory))
    return directory


# 4 users, 12 items. Train counts (seq[:-2]): item0 4, item1 4, item2 2, item4 1, item6 1, rest 0,
# so popularity ranks 0, 1, 2, 4, 6, 3, 5, 7, 8, 9, 10, 11 (equal counts: lower index first).
HAND_SEQUENCES = [[0, 1, 2, 3, 4], [0, 2, 1, 5, 3], [1, 0, 4, 2, 11], [0, 1, 6, 7, 10]]


def test_popularity_hand_computed_through_the_binary(tmp_path):
    data = write_dataset(tmp_path / "data", HAND_SEQUENCES, 12)
    out = tmp_path / "out"
    assert baseline.main(["--model", "popularity", "--data_dir", str(data), "--out", str(out), "--no_progress"]) == 0
    result = json.loads((out / "metrics.json").read_text())
    # valid (history seq[:-2] excluded): targets 3, 5, 2, 7 at ranks 2, 3, 0, 4.
    assert result["valid"]["hit@5"] == pytest.approx(1.0)
    assert result["valid"]["ndcg@5"] == pytest.approx((0.5 + 0.43067655807339306 + 1.0 + 0.38685280723454163) / 4)
    # test (history seq[:-1] excluded): targets 4, 3, 11, 10 at ranks 0, 2, 7, 6.
    assert result["test"]["hit@5"] == pytest.approx(0.5)
    assert result["test"]["hit@10"] == pytest.approx(1.0)
    assert result["test"]["ndcg@5"] == pytest.approx((1.0 + 0.5) / 4)
    assert result["test"]["ndcg@10"] == pytest.approx((1.0 + 0.5 + 0.31546487678572877 + 1 / 3) / 4)
    report = (out / "report.md").read_text()
    assert "| test | 0.5000 | 1.0000 | 0.3750 |" in report
    assert (out / "config.gin").exists()
    # Per-user test rankings in recjax eval's predictions format, which recjax compare reads.
    from recjax.evaluation import paired as compare
    from recjax.predictions import read_predictions

    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["target_rank"] for r in rows] == [0, 2, 7, 6] and [r["user"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["target"] == rows[0]["ranked"][0] and len({r["task"] for r in rows}) == 1
    table = compare.compare(read_predictions(str(out)), read_predictions(str(out)))
    ndcg = next(t for t in table if t["metric"] == "ndcg@10")
    assert ndcg["a"] == pytest.approx(result["test"]["ndcg@10"]) and ndcg["diff"] == 0.0
    # An existing --out is refused without --overwrite.
    with pytest.raises(SystemExit, match="already exists"):
        baseline.main(["--model", "popularity", "--data_dir", str(data), "--out", str(out)])


def test_bad_gin_binding_fails_before_any_work(tmp_path):
    with pytest.raises(SystemExit, match="hiden_dim"):
        baseline.main(["--model", "sasrec", "--data_dir", str(tmp_path / "missing"), "--out", str(tmp_path / "o"),
                       "--gin.SASRec.hiden_dim=8"])
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit, match="not a directory"):
        baseline.main(["--model", "popularity", "--data_dir", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])


def chain_sequences(num_users=128, num_items=40, seed=0):
    """Each user walks a fixed random cycle over all items from a random start: the next item is
    a deterministic function of the last one, which popularity cannot see."""
    rng = np.random.default_rng(seed)
    cycle = rng.permutation(num_items)
    seqs = []
    for _ in range(num_users):
        start, length = rng.integers(num_items), rng.integers(5, 8)
        seqs.append(cycle[(start + np.arange(length)) % num_items].astype(np.int32))
    return seqs


def splits(seqs):
    return ([s[:-2] for s in seqs], ([s[:-2] for s in seqs], np.array([s[-2] for s in seqs])),
            ([s[:-1] for s in seqs], np.array([s[-1] for s in seqs])))


def popularity_test_metrics(seqs, num_items):
    train, _, (hist, targets) = splits(seqs)
    pop = Popularity(num_items).fit(train)
    return full_ranking_metrics(lambda rows: pop.scores(len(rows)), hist, targets, num_items)


@pytest.mark.slow
def test_sasrec_learns_successor_pattern_and_checkpoint_round_trips(tmp_path):
    seqs, num_items = chain_sequences(), 40
    train, valid, test = splits(seqs)
    # max_len 8: every batch has width 8, so one compiled training and one scoring shape.
    model = SASRec(num_items, max_len=8, hidden_dim=32, dropout_rate=0.1, learning_rate=5e-3, batch_size=32)
    result = train_and_evaluate(model, train, valid, test, num_epochs=24, eval_every_epochs=8, patience=3,
                                eval_batch_size=128, progress=False)
    pop = popularity_test_metrics(seqs, num_items)
    assert result.test_metrics["hit@10"] >= 0.8, result.test_metrics
    assert result.test_metrics["ndcg@10"] > 3 * pop["ndcg@10"], (result.test_metrics, pop)
    # The orbax checkpoint restores parameters that give the same test metrics.
    save_params(str(tmp_path / "ckpt"), result.params, result.steps_run)
    restored = restore_params(str(tmp_path / "ckpt"), result.params)
    again = evaluate_model(model, jax.jit(model.scores), restored, *test, Partitioner.create(), 128)
    assert again == result.test_metrics


@pytest.mark.slow
def test_bert4rec_learns_successor_pattern_through_the_binary(tmp_path):
    seqs, num_items = chain_sequences(seed=1), 40
    data = write_dataset(tmp_path / "data", seqs, num_items, name="chain")
    out = tmp_path / "out"
    assert baseline.main([
        "--model", "bert4rec", "--data_dir", str(data), "--out", str(out), "--no_progress",
        "--gin.MAX_LEN=8", "--gin.BERT4Rec.hidden_dim=32", "--gin.BERT4Rec.batch_size=32",
        "--gin.BERT4Rec.learning_rate=5e-3", "--gin.BERT4Rec.warmup_steps=10", "--gin.BERT4Rec.mask_prob=0.3",
        "--gin.train_and_evaluate.num_epochs=30", "--gin.train_and_evaluate.eval_every_epochs=10",
        "--gin.train_and_evaluate.eval_batch_size=128"]) == 0
    result = json.loads((out / "metrics.json").read_text())
    pop = popularity_test_metrics(seqs, num_items)
    assert result["test"]["hit@10"] >= 0.8, result["test"]
    assert result["test"]["ndcg@10"] > 3 * pop["ndcg@10"], (result["test"], pop)
    config = (out / "config.gin").read_text()
    assert "BERT4Rec.mask_prob = 0.3" in config and "BERT4Rec.num_heads = 2" in config
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == [str(result["training"]["steps_run"])]
    assert "bert4rec on chain" in (out / "report.md").read_text()


@pytest.mark.parametrize("cls", [SASRec, BERT4Rec])
def test_width_buckets_do_not_change_scores(cls):
    model = cls(30, max_len=16, hidden_dim=16)
    params = jax.jit(model.init_params)(jax.random.PRNGKey(0))
    histories = [np.array([3, 1, 4]), np.array([5, 9, 2, 6, 5, 7])]
    narrow = model.history_tokens(histories)  # width 8
    assert narrow.shape[1] == 8
    wide = np.zeros((2, 16), np.int32)
    wide[:, 16 - 8:] = narrow  # the same rows padded to max_len
    scores = jax.jit(model.scores)
    np.testing.assert_allclose(scores(params, narrow), scores(params, wide), rtol=1e-5, atol=1e-5)


def test_bert4rec_cloze_batches():
    seqs = [np.arange(1, 7)]  # one user, items 1..6 -> tokens 2..7 in the last 6 of 8 columns
    model = BERT4Rec(20, max_len=8, mask_prob=0.5, mask_last_prob=0.0, batch_size=4)
    batch = next(model.epoch_batches(seqs, np.random.default_rng(0)))
    tokens = left_pad(seqs, 8)[0]  # [8]
    masked = batch["inputs"] == model.mask_token  # [4, 8]
    assert masked.any(axis=1).all()  # at least one prediction per row
    assert not masked[:, :2].any()  # padding is never masked
    np.testing.assert_array_equal(np.where(masked, tokens, batch["inputs"]), np.tile(tokens, (4, 1)))
    n = int(batch["pred_weights"].sum())
    assert n == masked.sum()
    rows, cols = batch["pred_rows"][:n], batch["pred_cols"][:n]
    assert masked[rows, cols].all()
    np.testing.assert_array_equal(batch["pred_labels"][:n], tokens[cols] - 1)  # original item indices
    last_only = BERT4Rec(20, max_len=8, mask_prob=0.5, mask_last_prob=1.0, batch_size=4)
    b = next(last_only.epoch_batches(seqs, np.random.default_rng(0)))
    assert ((b["inputs"] == last_only.mask_token) == (np.arange(8) == 7)).all()


def test_sasrec_negatives_avoid_the_users_items():
    seqs = [np.arange(0, 9)] * 4  # users own items 0..8 of 12
    model = SASRec(12, max_len=8, batch_size=4)
    batch = next(model.epoch_batches(seqs, np.random.default_rng(0)))
    real = batch["positives"] != 0
    assert real.sum() == 4 * 8
    assert (batch["negatives"][real] > 9).all()  # tokens 10..12 = items 9..11
    assert (batch["negatives"][~real] == 0).all()


def test_rating_mean_baselines_hand_computed_through_the_binary(tmp_path):
    # 2 users x 4 items; split codes 0 train / 1 valid / 2 test. The train records on each user's
    # last two items (the leave-one-out valid/test items) are left out, as the T5 rating task does.
    seqs = [[0, 1, 2, 3], [1, 0, 3, 2]]
    ratings = [[5.0, 3.0, 1.0, 4.0], [1.0, 2.0, 4.0, 5.0]]
    codes = [[0, 0, 0, 2], [2, 0, 1, 0]]
    ds = PreparedDataset(
        name="rated", indexing="sequential", item_ids=[f"i{i}" for i in range(4)],
        item_titles=[f"item {i}" for i in range(4)], item_original_ids=[str(i) for i in range(4)],
        item_attributes=[[] for _ in range(4)], sequences=[np.asarray(s, np.int32) for s in seqs],
        ratings=[np.asarray(r, np.float32) for r in ratings], timestamps=None, user_original_ids=["u0", "u1"],
        rating_splits=[np.asarray(c, np.int8) for c in codes])
    (tmp_path / "data").mkdir()
    write_prepared_files(ds, str(tmp_path / "data"))
    # Fit records: u0 item0 (5), item1 (3) [its item2 is its LOO valid item]; u1 item0 (2) [its item2
    # is its LOO test item]. Global mean 10/3; item means: item0 3.5, item1 3.0, unseen -> 10/3.
    # Test records: (u0, item3, 4), (u1, item1, 1); valid: (u1, item3, 4).
    out = {}
    for model in ("global_mean", "item_mean"):
        out[model] = tmp_path / model
        assert baseline.main(["--model", model, "--data_dir", str(tmp_path / "data"), "--out", str(out[model])]) == 0
    gm = json.loads((out["global_mean"] / "metrics.json").read_text())
    assert gm["test"]["mae"] == pytest.approx((2 / 3 + 7 / 3) / 2)
    assert gm["test"]["rmse"] == pytest.approx(np.sqrt(((2 / 3) ** 2 + (7 / 3) ** 2) / 2))
    assert gm["valid"]["mae"] == pytest.approx(2 / 3) and gm["valid"]["num_examples"] == 1
    im = json.loads((out["item_mean"] / "metrics.json").read_text())
    assert im["test"]["mae"] == pytest.approx((2 / 3 + 2.0) / 2)
    assert im["test"]["rmse"] == pytest.approx(np.sqrt(((2 / 3) ** 2 + 4.0) / 2))
    assert "| test | 1.4907 | 1.3333 | 2 |" in (out["item_mean"] / "report.md").read_text()
    # A dataset without ratings is refused with its name.
    unrated = write_dataset(tmp_path / "unrated", HAND_SEQUENCES, 12)
    with pytest.raises(SystemExit, match="has no ratings"):
        baseline.main(["--model", "item_mean", "--data_dir", str(unrated), "--out", str(tmp_path / "x")])


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["ce", "sampled"])
def test_sasrec_softmax_losses_learn_the_successor_pattern_faster_than_bce(loss):
    """Same model, data, seed and (short) budget: full / sampled softmax beats the paper's BCE
    with one negative by a wide margin (the gap the eSASRec / "Dross into gold" papers report)."""
    seqs, num_items = chain_sequences(num_users=600, num_items=300, seed=2), 300
    train, valid, test = splits(seqs)
    got = {}
    for name in ("bce", loss):
        model = SASRec(num_items, max_len=8, hidden_dim=32, dropout_rate=0.1, learning_rate=5e-3, batch_size=32,
                       loss=name, num_negatives=32)
        result = train_and_evaluate(model, train, valid, test, num_epochs=2, eval_every_epochs=2, patience=1,
                                    eval_batch_size=128, progress=False)
        got[name] = result.test_metrics["ndcg@10"]
    assert got[loss] > got["bce"] + 0.1, got


def test_sasrec_rejects_an_unknown_loss():
    with pytest.raises(ValueError, match="SASRec.loss must be one of"):
        SASRec(12, loss="bpr")


def test_bert4rec_sampled_softmax_is_the_full_softmax_when_every_item_is_sampled():
    """With every item as a 'sample' (the positive masked out of them), the sampled loss is exactly
    the full-vocabulary cross-entropy: the positive is scored, the accidental hit removed."""
    full = BERT4Rec(20, max_len=8, hidden_dim=16, batch_size=4, dropout_rate=0.0)
    sampled = BERT4Rec(20, max_len=8, hidden_dim=16, batch_size=4, dropout_rate=0.0, loss="sampled", num_negatives=19)
    params = jax.jit(full.init_params)(jax.random.PRNGKey(0))
    batch = next(sampled.epoch_batches([np.arange(1, 7), np.arange(5, 12)], np.random.default_rng(0)))
    assert batch["sampled"].shape == (19,) and batch["sampled"].min() >= 0 and batch["sampled"].max() < 20
    batch["sampled"] = np.arange(20, dtype=np.int32)
    key = jax.random.PRNGKey(1)
    want = float(full.loss(params, {k: v for k, v in batch.items() if k != "sampled"}, key))
    assert float(sampled.loss(params, batch, key)) == pytest.approx(want, rel=1e-5)
    batch["sampled"] = np.arange(10, dtype=np.int32)  # fewer items: a different (smaller) loss
    assert float(sampled.loss(params, batch, key)) < want - 1e-3


@pytest.mark.slow
def test_bert4rec_with_sampled_softmax_learns_successor_pattern():
    seqs, num_items = chain_sequences(seed=2), 40
    train, valid, test = splits(seqs)
    model = BERT4Rec(num_items, max_len=8, hidden_dim=32, batch_size=32, learning_rate=5e-3, warmup_steps=10,
                     mask_prob=0.3, loss="sampled", num_negatives=16)
    result = train_and_evaluate(model, train, valid, test, num_epochs=30, eval_every_epochs=10, patience=3,
                                eval_batch_size=128, progress=False)
    pop = popularity_test_metrics(seqs, num_items)
    assert result.test_metrics["hit@10"] >= 0.8, result.test_metrics
    assert result.test_metrics["ndcg@10"] > 3 * pop["ndcg@10"], (result.test_metrics, pop)
