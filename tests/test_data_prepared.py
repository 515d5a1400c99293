"""The prepared dataset: contract of PreparedDataset, storage round trip, splits, atomic output,
the synthetic generator, the TFDS copy, and the `recjax prepare` / `recjax stats` binaries."""
import json
import os

import numpy as np
import pytest

from recjax.cli import prepare as prepare_cli
from recjax.cli import stats as stats_cli
from recjax.data import PreparedDataset, load_prepared
from recjax.data.preparation import apply_policies
from recjax.data.prepared import NotPreparedError
from recjax.data.raw import to_prepared
from recjax.data.synthetic import synthetic_raw
from recjax.data.writing import make_synthetic

from tests.test_data_formats import write_amazon, write_p5


def _small(seed=0, **kw) -> PreparedDataset:
    raw = apply_policies(synthetic_raw(num_users=kw.pop("num_users", 60), num_items=kw.pop("num_items", 50), seed=seed, **kw), "synthetic")
    return to_prepared(raw, name="synthetic", source_format="synthetic", seed=seed)


def test_round_trip_through_disk(tmp_path):
    out = make_synthetic(tmp_path / "syn", num_users=60, num_items=50, seed=3)
    ds = load_prepared(out)
    ref = _small(seed=3)
    assert (ds.name, ds.indexing, ds.source_format, ds.seed) == ("synthetic", "random", "synthetic", 3)
    assert ds.item_ids == ref.item_ids and ds.item_titles == ref.item_titles
    assert ds.item_original_ids == ref.item_original_ids and ds.item_attributes == ref.item_attributes
    assert ds.user_original_ids == ref.user_original_ids
    for name in ("sequences", "ratings", "timestamps", "rating_splits"):
        got, want = getattr(ds, name), getattr(ref, name)
        assert len(got) == len(want) and all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(got, want)), name
    assert ds.sequences[0].dtype == np.int32 and ds.ratings[0].dtype == np.float32
    assert (ds.num_users, ds.num_items, ds.num_interactions) == (60, 50, sum(len(s) for s in ref.sequences))
    assert sorted(os.listdir(tmp_path)) == ["syn"]  # no temporary directory left


def test_leave_one_out_and_train_sequences():
    ds = _small()
    hist, tgt = ds.loo_split("test")
    vhist, vtgt = ds.loo_split("valid")
    train = ds.train_sequences()
    for u, s in enumerate(ds.sequences):
        assert np.array_equal(hist[u], s[:-1]) and tgt[u] == s[-1]
        assert np.array_equal(vhist[u], s[:-2]) and vtgt[u] == s[-2]
        assert np.array_equal(train[u], s[:-2])
    assert tgt.dtype == np.int32 and tgt.shape == (ds.num_users,)
    with pytest.raises(ValueError, match="train_sequences"):
        ds.loo_split("train")


def test_rating_split_is_p5s_seeded_80_10_10():
    ds = _small()
    parts = {s: ds.rating_split(s) for s in ("train", "valid", "test")}
    n = ds.num_interactions
    assert [len(parts[s][0]) for s in ("train", "valid", "test")] == [int(0.8 * n), int(0.1 * n), n - int(0.8 * n) - int(0.1 * n)]
    records = set()
    for users, items, ratings in parts.values():
        assert users.dtype == np.int32 and items.dtype == np.int32 and ratings.dtype == np.float32
        for u, i, r in zip(users, items, ratings):
            k = int(np.flatnonzero(ds.sequences[u] == i)[0])
            assert ds.ratings[u][k] == r
            records.add((int(u), int(i)))
    assert len(records) == n  # a partition of all records
    again = _small()
    assert np.array_equal(again.rating_split("test")[1], parts["test"][1])
    other = to_prepared(apply_policies(synthetic_raw(num_users=60, num_items=50, seed=0), "synthetic"), "s", "synthetic", seed=1)
    assert not np.array_equal(other.rating_split("test")[1], parts["test"][1])


def test_synthetic_is_seeded_and_sized():
    a, b, c = synthetic_raw(num_users=40, num_items=30, seed=5), synthetic_raw(num_users=40, num_items=30, seed=5), synthetic_raw(num_users=40, num_items=30, seed=6)
    assert a.item_titles == b.item_titles and all(np.array_equal(x, y) for x, y in zip(a.sequences, b.sequences))
    assert a.item_titles != c.item_titles
    assert len(set(a.item_titles)) == 30  # readable and unique
    ds = _small(num_users=200, num_items=80, min_len=6, max_len=9)
    lengths = [len(s) for s in ds.sequences]
    assert ds.num_users == 200 and ds.num_items == 80 and min(lengths) >= 6 and max(lengths) <= 9
    assert all(len(set(s.tolist())) == len(s) for s in ds.sequences)  # no repeated item
    assert all(np.all(np.diff(t) > 0) for t in ds.timestamps)
    assert set(np.concatenate(ds.ratings).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}


def test_synthetic_next_item_is_predictable_beyond_popularity():
    """Hit@10 of a first-order item-to-item model (counts from the training sequences) on the
    leave-one-out test split must clearly beat popularity: the data has learnable signal."""
    ds = to_prepared(apply_policies(synthetic_raw(seed=0), "synthetic"), "s", "synthetic")
    n = ds.num_items
    train = ds.train_sequences()
    popularity = np.bincount(np.concatenate(train), minlength=n).astype(float)
    transitions = np.zeros((n, n))
    for s in train:
        np.add.at(transitions, (s[:-1], s[1:]), 1)
    hist, targets = ds.loo_split("test")

    def hit_at_10(score):
        hits = 0
        for h, t in zip(hist, targets):
            s = score(h).copy()
            s[h] = -np.inf
            hits += t in np.argsort(-s)[:10]
        return hits / len(targets)

    pop, markov = hit_at_10(lambda h: popularity), hit_at_10(lambda h: transitions[h[-1]] + 1e-3 * popularity)
    assert markov > 2 * pop and markov > 0.4, (pop, markov)
    # ratings carry signal too: a user + item bias model beats the global mean on the rating test split
    u, i, r = ds.rating_split("train")
    tu, ti, tr = ds.rating_split("test")
    mu = r.mean()
    user_bias = np.bincount(u, r - mu, ds.num_users) / (np.bincount(u, minlength=ds.num_users) + 5)
    item_bias = np.bincount(i, r - mu - user_bias[u], n) / (np.bincount(i, minlength=n) + 5)
    rmse_mean = np.sqrt(np.mean((tr - mu) ** 2))
    rmse_bias = np.sqrt(np.mean((tr - mu - user_bias[tu] - item_bias[ti]) ** 2))
    assert rmse_bias < 0.9 * rmse_mean, (rmse_mean, rmse_bias)


def test_load_prepared_errors_are_clear(tmp_path):
    with pytest.raises(NotPreparedError, match="not a directory"):
        load_prepared(tmp_path / "nope")
    with pytest.raises(NotPreparedError, match="prepared.json missing"):
        load_prepared(tmp_path)
    out = make_synthetic(tmp_path / "s", num_users=30, num_items=30)
    os.remove(os.path.join(out, "interactions.npz"))
    with pytest.raises(NotPreparedError, match="interactions.npz missing"):
        load_prepared(out)


def test_cli_prepare_p5_and_stats(tmp_path, capsys):
    src = write_p5(tmp_path / "raw")
    out = tmp_path / "mini"
    assert prepare_cli.main(["--format", "p5", "--src", src, "--out", str(out), "--indexing", "sequential", "--no-tfds"]) == 0
    ds = load_prepared(out)
    assert ds.name == "raw" and ds.indexing == "sequential" and ds.item_ids[:3] == ["1", "2", "3"]
    capsys.readouterr()
    assert stats_cli.main([str(out)]) == 0
    text = capsys.readouterr().out
    assert "users          3\n" in text and "items          7\n" in text and "interactions   12\n" in text
    assert "density        57.1429%" in text  # 12 / (3 * 7)
    assert stats_cli.main([str(out), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["length"]["p50"] == 4 and figures["length"]["max"] == 5
    assert stats_cli.main([str(tmp_path / "raw")]) == 2
    assert "not a prepared dataset" in capsys.readouterr().err


def test_cli_prepare_prints_policy_counts_and_is_atomic(tmp_path, capsys):
    src = write_amazon(tmp_path / "raw")
    out = tmp_path / "beauty"
    assert prepare_cli.main(["--format", "amazon2014", "--src", src, "--out", str(out), "--no-tfds"]) == 0
    printed = capsys.readouterr().out
    assert "1 repeated (user, item) records, earliest kept" in printed
    assert "3 records removed by the 5/5-core filter" in printed and "1 users removed by the 5/5-core filter" in printed
    meta = json.load(open(out / "prepared.json"))
    assert meta["dropped"]["records removed by the 5/5-core filter"] == 3 and meta["name"] == "beauty"
    # an existing output is kept unless --overwrite
    assert prepare_cli.main(["--format", "amazon2014", "--src", src, "--out", str(out), "--no-tfds"]) == 2
    assert "already exists" in capsys.readouterr().err
    # a failure midway leaves neither the output nor a temporary directory
    with open(os.path.join(src, "meta_Beauty.json.gz"), "r+b") as f:
        f.truncate(40)
    assert prepare_cli.main(["--format", "amazon2014", "--src", src, "--out", str(tmp_path / "broken"), "--no-tfds"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recjax prepare: error: ") and "meta_Beauty.json.gz" in err and err.count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == ["beauty", "raw"]
    # --overwrite replaces atomically
    assert prepare_cli.main(["--format", "synthetic", "--num-users", "20", "--num-items", "30", "--out", str(out), "--overwrite", "--no-tfds"]) == 0
    assert load_prepared(out).source_format == "synthetic" and sorted(os.listdir(tmp_path)) == ["beauty", "raw"]


def test_tfds_copy_matches_and_loads_like_the_builder(tmp_path):
    """`recjax prepare` writes the TFDS folder directly; it must hold what TFDS's own builder
    writes (byte for byte) and load with plain tfds, no recjax needed."""
    import tensorflow_datasets as tfds

    from recjax.data.tfds_builder import build_with_tfds_builder, write_tfds

    ds = _small(seed=4, num_users=40, num_items=40)
    fast = write_tfds(ds, str(tmp_path / "fast"))
    slow = build_with_tfds_builder(ds, str(tmp_path / "slow"))
    for split in ("train", "validation", "test"):
        name = f"recjax_dataset-{split}.tfrecord-00000-of-00001"
        assert open(os.path.join(fast, name), "rb").read() == open(os.path.join(slow, name), "rb").read()
        examples = list(tfds.as_numpy(tfds.builder_from_directory(fast).as_dataset(split=split)))
        assert len(examples) == ds.num_users
        cut = {"train": -2, "validation": -1, "test": None}[split]
        for u, ex in enumerate(examples):
            assert ex["user_index"] == u and ex["user_id"].decode() == ds.user_original_ids[u]
            assert np.array_equal(ex["items"], ds.sequences[u][:cut]) and ex["items"].dtype == np.int32
            assert np.array_equal(ex["ratings"], ds.ratings[u][:cut]) and np.array_equal(ex["rating_split"], ds.rating_splits[u][:cut])
    catalog = json.load(open(os.path.join(fast, "metadata.json")))
    assert catalog["item_ids"] == ds.item_ids and catalog["item_titles"] == ds.item_titles
    # also through the CLI, and by registered name from the data dir (as seqio.TfdsDataSource does)
    out = tmp_path / "cli"
    assert prepare_cli.main(["--format", "synthetic", "--num-users", "30", "--num-items", "30", "--out", str(out), "--name", "tiny"]) == 0
    builder = tfds.builder("recjax_dataset/tiny:1.0.0", data_dir=str(out / "tfds"))
    assert builder.info.splits["test"].num_examples == 30
    meta = json.load(open(out / "prepared.json"))
    assert (meta["tfds_dir"], meta["tfds_name"]) == ("tfds/recjax_dataset/tiny/1.0.0", "recjax_dataset/tiny:1.0.0")
    # a name taken by a registered config of other data is not reused
    from recjax.data.tfds_builder import tfds_config_name

    ds.name = "beauty"  # the registered `beauty` config is P5 data, random indexing, seed 0
    assert tfds_config_name(ds) == "beauty_random_seed4"
    ds.name = "synthetic"
    assert tfds_config_name(ds) == "synthetic_random_seed4"
    ds.seed = 0
    assert tfds_config_name(ds) == "synthetic"


def test_tfds_builder_reads_raw_files_from_the_manual_dir(tmp_path):
    import tensorflow_datasets as tfds

    from recjax.data.tfds_builder import RecjaxDataset

    src = write_p5(tmp_path / "manual")
    builder = RecjaxDataset(config="beauty", data_dir=str(tmp_path / "data"))  # a P5-format config
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=src, try_download_gcs=False))
    test = list(tfds.as_numpy(builder.as_dataset(split="test")))
    ids = builder.info.metadata["item_ids"]
    assert [[ids[i] for i in ex["items"]] for ex in test] == [[ids[i] for i in s] for s in load_p5_sequences(src)]
    assert builder.info.metadata["item_original_ids"][0] == "B001"
    # no manual dir and no download allowed: a clear error, and no network
    with pytest.raises(FileNotFoundError, match="no raw files"):
        RecjaxDataset(config="ml_100k", data_dir=str(tmp_path / "data2")).download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "absent"), try_download_gcs=False))


def load_p5_sequences(src):
    from recjax.data.preparation import read_raw

    return read_raw("p5", src).sequences


def test_cli_prepare_refuses_an_input_its_policies_empty(tmp_path, capsys):
    """Every user too short for leave-one-out (P5), or a set the 5-core filter empties (Amazon):
    one line saying what was filtered away, exit 2, nothing written."""
    from tests.test_data_formats import amazon_records

    src = write_p5(tmp_path / "short", "1 1 2\r\n2 5 1\r\n3 2\r\n")
    out = tmp_path / "out"
    assert prepare_cli.main(["--format", "p5", "--src", src, "--out", str(out), "--no-tfds"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("recjax prepare: error: ")
    assert "sequential_data.txt: no user left after dropping users with fewer than 3 interactions" in err
    assert "(users with fewer than 3 interactions: 3)" in err
    # Amazon: only 4 reviews per user, so the 5-core filter removes every record.
    records = [r for r in amazon_records() if r["overall"] != 5.0]
    src = write_amazon(tmp_path / "thin", records=records)
    assert prepare_cli.main(["--format", "amazon2014", "--src", src, "--out", str(out), "--no-tfds"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no user left after the 5-core filter (--kcore)" in err
    assert "records removed by the 5/5-core filter" in err
    assert sorted(os.listdir(tmp_path)) == ["short", "thin"]


def test_a_run_killed_mid_write_leaves_temporaries_the_next_run_removes(tmp_path):
    """SIGKILL while `prepare` writes its output (here: while the TFDS copy imports TensorFlow)
    leaves `.out.tmp-PID-TAG`; the next run of the same destination removes it and says so."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "syn"
    argv = [sys.executable, "-m", "recjax.prepare", "--format", "synthetic", "--num-users", "30", "--num-items", "40",
            "--out", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not any(p.name.startswith(".syn.tmp-") for p in tmp_path.iterdir()):
        assert proc.poll() is None and time.time() < deadline, "prepare ended before writing its temporary"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stale = [p for p in tmp_path.iterdir() if p.name.startswith(".syn.tmp-")]
    assert len(stale) == 1 and not out.exists()
    result = subprocess.run(argv[:-2] + ["--out", str(out), "--no-tfds"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"removed {stale[0]}: a temporary left by an interrupted run" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"]


def test_stale_temporaries_of_live_writers_and_other_targets_are_kept(tmp_path):
    import subprocess
    import sys

    from recjax.data.atomic import atomic_write, remove_stale_temporaries

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    (tmp_path / f".out.tmp-{dead_pid}-abcd1234").mkdir()  # a killed writer's directory
    (tmp_path / f"metrics.json.tmp-{dead_pid}").write_text("{")  # a killed writer's file
    (tmp_path / f".out.tmp-{os.getpid()}-live0000").mkdir()  # this (live) process is writing it
    (tmp_path / f".other.tmp-{dead_pid}-abcd1234").mkdir()  # another destination's
    removed = remove_stale_temporaries(str(tmp_path / "out"))
    assert [os.path.basename(p) for p in removed] == [f".out.tmp-{dead_pid}-abcd1234"]
    atomic_write(str(tmp_path / "metrics.json"), "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".other.tmp-{dead_pid}-abcd1234",
                                                          f".out.tmp-{os.getpid()}-live0000", "metrics.json"]
