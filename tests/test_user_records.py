"""ArrayRecord user records (`recjax prepare --records N`, recjax.data.user_records): real Beauty
round-trips through the shards and each process reads only its block; tasks registered with
users='per_process' give, over the processes, exactly the examples of one registration over every
user; the Grain loader reads per-process examples without re-sharding them, and refuses what would
desynchronise the processes."""
import collections
import json

import jax
import numpy as np
import pytest

import tasks
from recjax import grain_loader, input_pipeline
from recjax.cli import prepare
from recjax.data import load_prepared
from recjax.data.prepared import NotPreparedError
from recjax.data.user_records import UserRecords
from recjax.data.writing import make_synthetic
from recjax.input_pipeline import DatasetConfig


def test_beauty_round_trips_through_the_shards_and_each_process_reads_its_block(shared_data, tmp_path):
    out = tmp_path / "beauty"
    assert prepare.main(["--format", "p5", "--src", str(shared_data / "beauty"), "--out", str(out), "--no-tfds",
                         "--records", "4"]) == 0
    full = load_prepared(str(out))
    meta = json.load(open(out / "records" / "records.json"))
    assert meta == {"num_users": 22363, "num_shards": 4, "fields": ["items"]}
    records = UserRecords(str(out))
    assert records[22362]["id"] == full.user_original_ids[-1] and np.array_equal(records[5000]["items"], full.sequences[5000])
    blocks = [load_prepared(str(out), process_index=p, process_count=3) for p in range(3)]
    assert [(b.user_offset, b.num_users) for b in blocks] == [(0, 7454), (7454, 7454), (14908, 7455)]
    assert all(b.total_users == 22363 and b.item_ids == full.item_ids for b in blocks)
    joined = [s for b in blocks for s in b.sequences]
    assert len(joined) == full.num_users and all(np.array_equal(a, b) for a, b in zip(joined, full.sequences))
    assert [u for b in blocks for u in b.user_original_ids] == full.user_original_ids


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("records") / "syn"
    make_synthetic(str(out), num_users=300, num_items=120, seed=4)
    from recjax.data.user_records import write_user_records

    write_user_records(load_prepared(str(out)), str(out), 3)
    return out


def _epoch(name, split="train"):
    ds = grain_loader.examples(name, split, {"inputs": 256, "targets": 16}, seed=1, shuffle=True, num_epochs=1)
    return collections.Counter((tuple(e["inputs"]), tuple(e["targets"])) for e in ds)


def _register(synthetic, vocab, monkeypatch, process_index, process_count):
    monkeypatch.setattr(jax, "process_index", lambda: process_index)
    monkeypatch.setattr(jax, "process_count", lambda: process_count)
    return tasks.register_dataset(str(synthetic), "synpp", str(vocab), users="per_process", num_negatives=19)


@pytest.mark.parametrize("task", ["retrieval", "ranking", "mim"])
def test_per_process_examples_are_the_whole_registrations(synthetic, t5_vocab_path, monkeypatch, task):
    tasks.register_dataset(str(synthetic), "synall", str(t5_vocab_path), num_negatives=19)
    want = _epoch(f"synall_{task}")
    got = collections.Counter()
    for p in range(2):
        registered = _register(synthetic, t5_vocab_path, monkeypatch, p, 2)
        assert registered.builder.num_users == 150 and registered.process_block == (p, 2)
        got += _epoch(f"synpp_{task}")
    assert got == want and sum(want.values()) >= 300  # mim: one a user


def test_grain_reads_per_process_examples_and_refuses_what_would_desynchronise(synthetic, t5_vocab_path, monkeypatch):
    _register(synthetic, t5_vocab_path, monkeypatch, 1, 2)
    lengths = {"inputs": 256, "targets": 16}
    batch = next(iter(grain_loader.batches("synpp_rec", lengths, split="train", batch_size=8, shuffle=True, seed=0,
                                           pack=False, num_epochs=None, process_index=1, process_count=2)))
    assert batch["encoder_input_tokens"].shape == (4, 256)
    with pytest.raises(ValueError, match=r"read by process 0 of 2"):
        grain_loader.batches("synpp_rec", lengths, split="train", batch_size=8, shuffle=True, seed=0, pack=False,
                             num_epochs=None, process_index=0, process_count=2)
    with pytest.raises(ValueError, match="a finite pass"):
        grain_loader.batches("synpp_rec", lengths, split="train", batch_size=8, shuffle=True, seed=0, pack=False,
                             num_epochs=1, process_index=1, process_count=2)
    from recjax.evaluation.evaluator import load_examples

    with pytest.raises(ValueError, match="which trains only"):
        load_examples("synpp_retrieval", "validation")
    if tasks.seqio_available():
        cfg = DatasetConfig("synpp_rec", lengths, split="train", batch_size=8, shuffle=True, seed=0)
        with pytest.raises(ValueError, match="only the Grain loader"):
            input_pipeline.build_dataset(cfg, process_index=1, process_count=2)


def test_missing_records_are_one_line_errors(tmp_path, synthetic):
    plain = tmp_path / "plain"
    make_synthetic(str(plain), num_users=50, num_items=40)
    with pytest.raises(NotPreparedError, match=r"no user records \(records/records.json missing; write them with "
                                               r"`recjax prepare --records N`\)"):
        load_prepared(str(plain), process_index=0, process_count=2)
    (synthetic / "records" / "users-00001-of-00003.array_record").rename(tmp_path / "moved")
    try:
        with pytest.raises(NotPreparedError, match=r"users-00001-of-00003.array_record: missing user record shard"):
            load_prepared(str(synthetic), process_index=0, process_count=2)
    finally:
        (tmp_path / "moved").rename(synthetic / "records" / "users-00001-of-00003.array_record")


_PROCESS = """
import json, sys
import jax, numpy as np
from recjax import multihost
import tasks
from recjax import grain_loader
multihost.initialize(sys.argv[1], 2, int(sys.argv[2]))
r = tasks.register_dataset(sys.argv[3], "synmh", sys.argv[4], users="per_process", num_negatives=19)
batch = next(iter(grain_loader.batches("synmh_retrieval", {"inputs": 256, "targets": 16}, split="train", batch_size=8,
                                       shuffle=True, seed=0, pack=False, num_epochs=None,
                                       process_index=jax.process_index(), process_count=jax.process_count())))
json.dump({"block": list(r.process_block), "offset": r.builder.user_offset, "ids": r.builder.dataset.user_original_ids,
           "rows": int(batch["encoder_input_tokens"].shape[0])},
          open(sys.argv[5], "w"))
"""


def test_two_jax_processes_each_read_their_own_users(synthetic, t5_vocab_path, tmp_path):
    """Two real JAX processes (jax.distributed on localhost): each registers and reads its block."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outs = [tmp_path / f"p{i}.json" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", _PROCESS, f"127.0.0.1:{port}", str(i), str(synthetic),
                               str(t5_vocab_path), str(outs[i])], stderr=subprocess.PIPE) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
    got = [json.load(open(o)) for o in outs]
    assert [g["block"] for g in got] == [[0, 2], [1, 2]] and [g["rows"] for g in got] == [4, 4]
    ids = load_prepared(str(synthetic)).user_original_ids
    assert [g["offset"] for g in got] == [0, 150] and got[0]["ids"] == ids[:150] and got[1]["ids"] == ids[150:]


def test_no_user_draws_from_the_order_permutations_stream():
    """Draws are keyed by the global user index; past a million users one index would equal the
    example-order permutation's stream id: user_stream skips it and leaves smaller indices as they were."""
    from tasks import examples

    users = range(examples._ORDER_STREAM - 2, examples._ORDER_STREAM + 3)
    keys = [examples.user_stream(u) for u in users]
    assert examples._ORDER_STREAM not in keys and len(set(keys)) == len(keys)
    assert [examples.user_stream(u) for u in range(22363)] == list(range(22363))
