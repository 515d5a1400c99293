"""SeqIO tasks on the embedded synthetic dataset (no outside files): shapes after the EncDec
feature converter, determinism, fresh per-epoch sampling, the leakage rule, valid targets, rating,
metric fns, span corruption, the dataset vocabulary, and bad input."""
import collections
import os
import re

import gin
import numpy as np
import pytest
import seqio

import tasks
from recjax.data import load_prepared
from recjax.data.writing import make_synthetic
from tasks import metric_fns, span_corruption
from tasks.examples import ExampleBuilder, TaskOptions
from tasks.vocab import load_vocabulary, train_sentencepiece
from task_checks import check_no_leakage  # tests/task_checks.py

LENGTHS = {"inputs": 256, "targets": 32}
ID_TASKS = ("retrieval", "ranking", "mim", "bpr")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A small synthetic dataset with ratings, its own vocabulary and registered tasks."""
    root = tmp_path_factory.mktemp("synthetic")
    data_dir = make_synthetic(str(root / "data"), num_users=120, num_items=80, seed=3)
    vocab_path = tasks.dataset_vocabulary(data_dir=data_dir, vocab_size=1000)
    registered = tasks.register_dataset(data_dir, "synt", vocab_path, max_history=6, num_negatives=19,
                                        mixture_rates={"ranking": 2.0, "mlm": 0.5}, shuffle_buffer_size=200)
    return registered


def _first(ds, n):
    return [ex for _, ex in zip(range(n), ds.as_numpy_iterator())]


def test_registers_every_task_and_mixture(synthetic):
    assert set(synthetic.tasks) == {"retrieval", "ranking", "rating", "mim", "mlm", "bpr"}
    assert set(synthetic.mixtures.values()) == {
        "synt_rec", "synt_rec_aux", "synt_rec_mim", "synt_rec_mlm", "synt_rec_bpr"}
    rec_aux = seqio.get_mixture_or_task("synt_rec_aux")
    assert sorted(t.name for t in rec_aux.tasks) == sorted(f"synt_{k}" for k in synthetic.tasks)
    assert {t.name for t in seqio.get_mixture_or_task("synt_rec_bpr").tasks} == {
        "synt_retrieval", "synt_ranking", "synt_rating", "synt_bpr"}
    for name in synthetic.tasks.values():
        assert seqio.get_mixture_or_task(name).splits == ("train", "validation", "test")


@pytest.mark.parametrize("name,pack", [("synt_rec_aux", True), ("synt_ranking", False)])
def test_feature_shapes_after_encdec_converter(synthetic, name, pack):
    ds = seqio.get_dataset(name, task_feature_lengths=LENGTHS, dataset_split="train",
                           shuffle=True, seed=1, num_epochs=None,
                           feature_converter=seqio.EncDecFeatureConverter(pack=pack))
    batch = next(ds.batch(4, drop_remainder=True).as_numpy_iterator())
    expected = {"encoder_input_tokens", "decoder_target_tokens", "decoder_input_tokens", "decoder_loss_weights"}
    if pack:
        expected |= {"encoder_segment_ids", "decoder_segment_ids", "encoder_positions", "decoder_positions"}
    assert set(batch) == expected
    for key, value in batch.items():
        length = LENGTHS["inputs"] if key.startswith("encoder") else LENGTHS["targets"]
        assert value.shape == (4, length), key
        assert value.dtype == np.int32
    vocab_size = synthetic.vocabulary.vocab_size
    assert batch["encoder_input_tokens"].max() < vocab_size
    # Every row holds a target ending in EOS (=1); decoder inputs are targets shifted right.
    assert (batch["decoder_target_tokens"] == 1).any(axis=1).all()
    if pack:  # packing puts several examples in a row
        assert batch["encoder_segment_ids"].max() > 1
    else:
        np.testing.assert_array_equal(batch["decoder_input_tokens"][:, 1:], batch["decoder_target_tokens"][:, :-1])


def test_same_seed_same_stream_other_seed_other_stream(synthetic):
    def stream(name, seed):
        ds = seqio.get_mixture_or_task(name).get_dataset(
            LENGTHS, split="train", shuffle=True, seed=seed, num_epochs=None)
        return [(tuple(ex["inputs"]), tuple(ex["targets"])) for ex in _first(ds, 60)]

    assert stream("synt_rec_aux", 5) == stream("synt_rec_aux", 5)
    assert stream("synt_retrieval", 5) != stream("synt_retrieval", 6)


def test_each_epoch_draws_fresh_masks_and_negatives_deterministically(synthetic):
    users = synthetic.builder.num_users

    def epochs(task):
        ds = seqio.get_mixture_or_task(f"synt_{task}").get_dataset(
            LENGTHS, split="train", shuffle=False, seed=2, num_epochs=2)
        rows = [(int(ex["user"]), ex["inputs_pretokenized"], ex["targets_pretokenized"])
                for ex in ds.as_numpy_iterator()]
        return rows

    for task in ("mim", "mlm"):  # one example per user and epoch
        rows = epochs(task)
        assert len(rows) == 2 * users
        first, second = rows[:users], rows[users:]
        assert [r[0] for r in first] == [r[0] for r in second]  # same users, in order
        changed = sum(a[1:] != b[1:] for a, b in zip(first, second))
        assert changed > 0.8 * users, f"{task}: only {changed} of {users} examples changed between epochs"
        assert rows == epochs(task)  # and the two epochs are the same in a second run
    # Ranking negatives are fresh per training epoch but fixed for validation.
    builder = synthetic.builder
    e0 = builder.user_examples("ranking", "train", 7, epoch=0, seed=2)
    e1 = builder.user_examples("ranking", "train", 7, epoch=1, seed=2)
    assert [r["candidate_ids"] for r in e0] != [r["candidate_ids"] for r in e1]
    v0 = builder.user_examples("ranking", "validation", 7, epoch=0, seed=2)
    v1 = builder.user_examples("ranking", "validation", 7, epoch=5, seed=2)
    assert v0 == v1


def test_no_validation_or_test_item_in_any_training_sample(synthetic):
    builder = synthetic.builder
    checked = check_no_leakage(builder, range(builder.num_users))
    assert checked > 4 * builder.num_users
    # Negatives (ranking, BPR) are never items the user interacted with, in any split.
    for user in range(0, builder.num_users, 7):
        touched = {builder.item_ids[i] for i in builder.full[user]}
        for split in ("train", "validation", "test"):
            for row in builder.user_examples("ranking", split, user, epoch=1, seed=0):
                candidates = row["candidate_ids"].split()
                assert len(candidates) == 20 and len(set(candidates)) == 20
                assert set(candidates) & touched == {row["target_id"]}


def test_every_target_is_a_valid_item_id_and_ratings_are_stars(synthetic):
    valid = set(load_prepared(synthetic.data_dir).item_ids)
    builder = synthetic.builder
    for kind in ID_TASKS:  # every example of every split (the text seqio tokenizes)
        for split in ("train", "validation", "test"):
            chunks = list(builder.iter_chunks(kind, split, epoch=1, seed=0, shuffle=False))
            targets = [t for c in chunks for t in c["targets"]]
            assert len(targets) == builder.num_examples(kind, split)
            for target in targets:
                ids = target.split(", ") if kind == "mim" else [target]
                assert set(ids) <= valid, (kind, split, target)
    # Through seqio: the decoded target tokens are the same IDs.
    ds = seqio.get_mixture_or_task("synt_mim").get_dataset(LENGTHS, split="train", shuffle=False)
    for ex in _first(ds, 50):
        decoded = synthetic.vocabulary.decode(ex["targets"].tolist())
        assert decoded == ex["targets_pretokenized"].decode() and set(decoded.split(", ")) <= valid
    ratings = [float(t) for c in builder.iter_chunks("rating", "test", 0, 0, False) for t in c["targets"]]
    assert ratings and set(ratings) <= {1.0, 2.0, 3.0, 4.0, 5.0}


def test_rating_train_split_leaves_out_the_leave_one_out_items(synthetic):
    builder = synthetic.builder
    dataset = builder.dataset
    users, items, _ = dataset.rating_split("train")
    held = {(u, int(dataset.sequences[u][-1])) for u in range(dataset.num_users)}
    held |= {(u, int(dataset.sequences[u][-2])) for u in range(dataset.num_users)}
    dropped = sum((int(u), int(i)) in held for u, i in zip(users, items))
    assert dropped > 0  # the P5 split does put some held-out items in its train part ...
    assert builder.num_examples("rating", "train") == len(users) - dropped  # ... and we drop them


def test_metric_fns_wrap_recjax_metrics():
    valid = ["10", "11", "12", "13"]
    retrieval = metric_fns.retrieval_metric_fn(valid)
    targets = [{"target": "12", "history": ["10"], "candidates": []},
               {"target": "13", "history": [], "candidates": []}]
    # User 1: "10" is history (excluded), so "12" ranks first; user 2: target absent; "x" invalid.
    out = retrieval(targets, [["10", "12", "11"], ["11", "x"]])
    assert out["hit@5"] == pytest.approx(0.5) and out["ndcg@5"] == pytest.approx(0.5)
    assert out["valid_id_rate"] == pytest.approx(4 / 5)
    ranking_targets = [{"target": "b", "history": [], "candidates": ["a", "b", "c"]}]
    assert metric_fns.ranking_metric_fn(ranking_targets, [["b", "a"]])["hr@1"] == 1.0
    assert metric_fns.ranking_metric_fn(ranking_targets, [["a", "b"]])["hr@1"] == 0.0
    assert metric_fns.ranking_metric_fn(ranking_targets, [[]])["hr@1"] == 0.0  # ties: pessimistic
    assert metric_fns.ranking_metric_fn(ranking_targets, [["c", "b"]])["ndcg@5"] == pytest.approx(1 / np.log2(3))
    preds = [metric_fns.rating_postprocess(p) for p in ["4", "five", "2.5"]]
    out = metric_fns.rating_metric_fn([4.0, 5.0, 2.5], preds)
    assert out["rating_parse_rate"] == pytest.approx(2 / 3)
    assert out["mae"] == pytest.approx((0 + 2 + 0) / 3)


def test_postprocess_reads_the_examples_metadata(synthetic):
    task = seqio.get_mixture_or_task("synt_retrieval")
    ex = _first(task.get_dataset(LENGTHS, split="test", shuffle=False), 1)[0]
    target = task.postprocess_fn(ex["targets_pretokenized"].decode(), example=ex, is_target=True)
    assert target["target"] == ex["targets_pretokenized"].decode()
    assert target["history"] == ex["history_ids"].decode().split() and target["history"]
    assert task.postprocess_fn(["5", "7"], example=ex, is_target=False) == ["5", "7"]
    assert [f.__name__ for f in task.predict_metric_fns] == ["retrieval"]


def test_span_corruption_matches_t5_and_reconstructs():
    rng = np.random.default_rng(0)
    tokens = np.arange(3, 203, dtype=np.int32)  # [200]
    sentinels = 1000 - np.arange(100, dtype=np.int32)
    inputs, targets = span_corruption.span_corrupt(tokens, rng, sentinels)
    noise = len(targets) - np.isin(targets, sentinels).sum()
    assert noise == 30  # round(200 * 0.15)
    assert np.isin(inputs, sentinels).sum() == np.isin(targets, sentinels).sum() == 10  # 30 / 3
    # Fill each input sentinel with the target span that follows the same sentinel.
    spans, current = {}, None
    for t in targets:
        if t in sentinels:
            current = int(t)
            spans[current] = []
        else:
            spans[current].append(int(t))
    rebuilt = [x for t in inputs for x in (spans[int(t)] if t in sentinels else [int(t)])]
    assert rebuilt == tokens.tolist()
    again = span_corruption.span_corrupt(tokens, np.random.default_rng(0), sentinels)
    assert all(np.array_equal(a, b) for a, b in zip((inputs, targets), again))


def test_train_sentencepiece_is_deterministic_and_t5_compatible(tmp_path):
    texts = [f"{i} (Lumen hydrating serum number {i % 17})" for i in range(300)]
    a = train_sentencepiece(texts, str(tmp_path / "a.model"), vocab_size=8000)  # too big: sized down
    b = train_sentencepiece(texts, str(tmp_path / "b.model"), vocab_size=8000)
    assert open(a, "rb").read() == open(b, "rb").read()
    vocab = load_vocabulary(a)
    assert (vocab.pad_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2)
    assert vocab.extra_ids == 100 and vocab.vocab_size < 8000 + 100
    assert vocab.encode("<extra_id_0>") == [vocab.vocab_size - 1]
    text = "12 (Lumen hydrating serum)"
    assert vocab.decode(vocab.encode(text)) == text
    assert not list(tmp_path.glob(".spm_tmp_*"))  # nothing half-written left behind


def test_bad_input_gives_one_line_errors(synthetic, tmp_path):
    with pytest.raises(ValueError, match=r"unknown task or mixture 'synt_nope'; registered: .*synt_rec_aux") as e:
        tasks.get_mixture_or_task("synt_nope")
    assert "\n" not in str(e.value)
    not_prepared = tmp_path / "raw"
    not_prepared.mkdir()
    with pytest.raises(ValueError, match="not a prepared dataset") as e:
        tasks.register_dataset(str(not_prepared), "bad", synthetic.vocabulary.sentencepiece_model_file)
    assert str(not_prepared) in str(e.value).splitlines()[0]
    missing = str(tmp_path / "nowhere" / "spiece.model")
    with pytest.raises(FileNotFoundError, match="SentencePiece vocabulary not found") as e:
        tasks.register_dataset(synthetic.data_dir, "bad", missing)
    # (gin appends "In call to configurable ..." lines; the CLI prints the first line only)
    assert str(e.value).splitlines()[0].startswith(f"{missing}: SentencePiece vocabulary not found")
    with pytest.raises(ValueError, match="local file"):
        load_vocabulary("gs://t5-data/vocabs/cc_all.32000/sentencepiece.model")
    garbage = tmp_path / "garbage.model"
    garbage.write_text("not a model")
    with pytest.raises(ValueError, match="not a SentencePiece model"):
        load_vocabulary(str(garbage))
    with pytest.raises(ValueError, match="mixture_rates: unknown task kind 'ratings'"):
        tasks.register_dataset(synthetic.data_dir, "bad", missing, mixture_rates={"ratings": 1.0})
    with pytest.raises(ValueError, match="num_negatives=500"):
        ExampleBuilder(load_prepared(synthetic.data_dir), TaskOptions(num_negatives=500))


def test_inspect_cli_prints_examples_percentiles_and_truncation(synthetic, capsys):
    from recjax.cli import inspect

    vocab = synthetic.vocabulary.sentencepiece_model_file
    argv = ["--gin_file=gin/tasks/synthetic.gin", f"--gin.DATA_DIR='{synthetic.data_dir}'",
            f"--gin.VOCAB_PATH='{vocab}'", "--gin.tasks.register_dataset.name='synt'",
            "--gin.MAX_HISTORY=6", "--gin.tasks.register_dataset.num_negatives=19",
            "--gin.tasks.register_dataset.mixture_rates={'ranking': 2.0, 'mlm': 0.5}",
            "--gin.tasks.register_dataset.shuffle_buffer_size=200", "--task=synt_ranking", "-n", "2", "--inputs_length=64", "--stats_examples=50"]
    cwd = os.getcwd()
    os.chdir(os.path.dirname(os.path.dirname(__file__)))
    try:
        assert inspect.main(argv) == 0
    finally:
        os.chdir(cwd)
        gin.clear_config()
    out = capsys.readouterr().out
    assert "== synt_ranking (train)" in out
    assert out.count("-- example") == 2 and "inputs:  " in out and "targets: " in out
    assert re.search(r"inputs +\d+ +\d+ +\d+ +\d+ +\d+", out)
    # Ranking inputs are > 64 tokens: all 50 would be truncated.
    assert "truncated at inputs=64: 50 (100.00%)" in out
    assert inspect.main(["--gin_file=gin/tasks/synthetic.gin", f"--gin.DATA_DIR='{synthetic.data_dir}'",
                         f"--gin.VOCAB_PATH='{vocab}'", "--gin.tasks.register_dataset.name='synt'",
                         "--gin.MAX_HISTORY=6", "--gin.tasks.register_dataset.num_negatives=19",
                         "--gin.tasks.register_dataset.mixture_rates={'ranking': 2.0, 'mlm': 0.5}",
                         "--gin.tasks.register_dataset.shuffle_buffer_size=200", "--task=synt_bogus"]) == 2
    gin.clear_config()
    err = capsys.readouterr().err.strip()
    assert err.startswith("recjax inspect: error: unknown task or mixture 'synt_bogus'") and "\n" not in err


def test_mixture_proportions_follow_the_rates(synthetic):
    rates = {"retrieval": 1.0, "ranking": 2.0, "rating": 1.0, "mim": 1.0, "mlm": 0.5, "bpr": 1.0}
    n = 3000
    ds = seqio.get_mixture_or_task("synt_rec_aux").get_dataset(
        LENGTHS, split="train", shuffle=False, seed=4, num_epochs=None, passthrough_features=["task"])
    counts = collections.Counter(ex["task"].decode() for ex in _first(ds, n))
    total = sum(rates.values())
    for kind, rate in rates.items():
        p = rate / total
        sigma = np.sqrt(p * (1 - p) / n)
        assert abs(counts[kind] / n - p) < 4 * sigma, (kind, counts[kind] / n, p)
