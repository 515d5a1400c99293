"""The Grain loader (#22 item 1) against SeqIO's on real Beauty: array for array where the order
can be the same (one task, no shuffle buffer; padded and T5-packed); otherwise the same examples
per epoch, mixtures by their rates, first-fit packed rows that never mix examples, a resumed
iterator that builds none of the examples it skips, the same global batches on two processes,
and training with TensorFlow and SeqIO blocked."""
import collections
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

import tasks
from recjax import grain_loader, input_pipeline
from recjax.config import EOS_ID
from recjax.input_pipeline import DatasetConfig
from tasks.examples import token_pairs

pytestmark = pytest.mark.slow  # integration tier: `pytest -m "not slow"` leaves it out

REPO = pathlib.Path(__file__).resolve().parent.parent
BATCHES = 150


@pytest.fixture(scope="module")
def beauty(shared_data, t5_vocab_path, tmp_path_factory):
    from recjax.cli import prepare

    out = tmp_path_factory.mktemp("beauty_grain") / "beauty"
    assert prepare.main(["--format", "p5", "--src", str(shared_data / "beauty"), "--out", str(out), "--no-tfds"]) == 0
    # shuffle_buffer_size=None: the source's seeded shuffle only, which the Grain source replays.
    # beautygw: the default window shuffle of 1,000 examples on top (items by ID alone: short inputs).
    tasks.register_dataset(str(out), "beautygw", str(t5_vocab_path), item_text=False)
    return tasks.register_dataset(str(out), "beautynp", str(t5_vocab_path), shuffle_buffer_size=None,
                                  mixture_rates={"ranking": 3.0})


def _grain(cfg: DatasetConfig, **split):
    return iter(input_pipeline.grain_batches(cfg, **(split or dict(process_index=0, process_count=1))))


def _both(cfg: DatasetConfig, n: int):
    seqio_it = input_pipeline.build_dataset(cfg, process_index=0, process_count=1).as_numpy_iterator()
    grain_it = _grain(cfg)
    return [next(seqio_it) for _ in range(n)], [next(grain_it) for _ in range(n)]


@pytest.mark.parametrize("task,pack,lengths", [
    ("beautynp_retrieval", False, {"inputs": 256, "targets": 16}),
    ("beautynp_retrieval", True, {"inputs": 512, "targets": 16}),
    ("beautynp_mlm", True, {"inputs": 256, "targets": 64}),
    ("beautynp_ranking", False, {"inputs": 128, "targets": 8}),  # inputs trimmed: EOS after the cut
])
def test_grain_gives_seqios_batches(beauty, task, pack, lengths):
    cfg = DatasetConfig(task, lengths, split="train", batch_size=32, shuffle=True, seed=3, pack=pack, loader="grain")
    want, got = _both(cfg, BATCHES)
    for i, (a, b) in enumerate(zip(want, got)):
        assert sorted(a) == sorted(b), (i, sorted(a), sorted(b))
        for key in a:
            np.testing.assert_array_equal(b[key], a[key], err_msg=f"batch {i} {key}")
    if pack:
        assert max(int(b["encoder_segment_ids"].max()) for b in got) > 1  # rows really hold several examples


def test_a_resumed_iterator_restores_its_position_without_building_what_it_skips(beauty, monkeypatch):
    """Resume at batch 600 (19,200 examples, 14 blocks in): the restored iterator gives the
    uninterrupted batches and builds only the blocks it reads from."""
    cfg = DatasetConfig("beautynp_retrieval", {"inputs": 128, "targets": 16}, batch_size=32, seed=1, loader="grain")
    it = _grain(cfg)
    for _ in range(600):
        next(it)
    state = it.get_state()
    want = [next(it) for _ in range(3)]
    calls = []
    build = tasks.examples.ExampleBuilder.build_block
    monkeypatch.setattr(tasks.examples.ExampleBuilder, "build_block",
                        lambda self, *a, **k: calls.append(a) or build(self, *a, **k))
    resumed = input_pipeline.BatchIterator(cfg, batches_consumed=600, iterator_state=state, process_index=0,
                                           process_count=1)
    for batch in want:
        got = next(resumed)
        for key in batch:
            np.testing.assert_array_equal(got[key], batch[key], err_msg=key)
    # The blocks (~1,400 examples each) of the next 96 examples and of the read-ahead (512), not
    # the 14 blocks of the 19,200 examples skipped.
    assert 1 <= len(calls) <= 3, len(calls)
    assert resumed.batches_consumed == 603 and resumed.iterator_state() != state
    resumed.close()


def test_an_epoch_is_seqios_examples_with_a_window_shuffle(beauty):
    """With the registration's shuffle buffer (a window shuffle here) the order differs from
    SeqIO's, the examples do not: one epoch holds every example of the epoch once."""
    # The retrieval task's validation split (one example per user: 22,363), shuffled as training is.
    builder = tasks.dataset_of("beautygw_retrieval").builder
    n = builder.num_examples("retrieval", "validation")
    lengths = {"inputs": 512, "targets": 32}
    ds = grain_loader.examples("beautygw_retrieval", "validation", lengths, seed=2, shuffle=True, num_epochs=1)
    assert len(ds) == n
    got = collections.Counter((ex["inputs"].tobytes(), ex["targets"].tobytes()) for ex in ds)
    want = collections.Counter()
    for chunk in builder.token_chunks("retrieval", "validation", 0, 2, True):
        for pair in token_pairs(chunk):
            want[tuple(np.append(pair[k], EOS_ID).astype(np.int32)[:lengths[k]].tobytes() for k in ("inputs", "targets"))] += 1
    assert got == want
    in_order = [ex["inputs"] for ex in grain_loader.TaskSource("beautygw_retrieval", "validation", lengths, seed=2,
                                                               shuffle=True, num_epochs=1)[:50]]
    assert any(not np.array_equal(a["inputs"], b) for a, b in zip(ds[:50], in_order))  # the window shuffled


def test_mixture_follows_the_rates_and_is_deterministic(beauty):
    lengths = {"inputs": 512, "targets": 8}
    draw = lambda: list(grain_loader.examples("beautynp_rec", "train", lengths, seed=5, shuffle=True,
                                              num_epochs=None)[:2000])
    first, again = draw(), draw()
    assert all(np.array_equal(a["inputs"], b["inputs"]) for a, b in zip(first, again))
    # Every ranking template names the candidates before listing them; no retrieval template does.
    tok = beauty.tokenizer
    ranking = sum("andidate" in tok.DecodeIds([int(t) for t in ex["inputs"]]) for ex in first)
    assert abs(ranking / len(first) - 0.75) < 0.01, ranking / len(first)  # rates 3 : 1


def test_two_processes_read_one_process_global_batches(beauty):
    cfg = DatasetConfig("beautynp_rec", {"inputs": 256, "targets": 16}, batch_size=8, seed=1, loader="grain")
    one = _grain(cfg)
    halves = [_grain(cfg, process_index=p, process_count=2) for p in range(2)]
    for _ in range(5):
        whole, parts = next(one), [next(h) for h in halves]
        assert all(p["encoder_input_tokens"].shape == (4, 256) for p in parts)
        rows = lambda b: sorted(r.tobytes() for r in b["encoder_input_tokens"])
        assert rows(whole) == sorted(rows(parts[0]) + rows(parts[1]))


def _segments(batch: dict) -> list[dict]:
    """The examples of packed rows, one by one (split at the segment ids)."""
    out = []
    for row in range(len(batch["encoder_input_tokens"])):
        for seg in range(1, int(batch["encoder_segment_ids"][row].max()) + 1):
            out.append({"inputs": batch["encoder_input_tokens"][row][batch["encoder_segment_ids"][row] == seg],
                        "targets": batch["decoder_target_tokens"][row][batch["decoder_segment_ids"][row] == seg]})
    return out


@pytest.mark.parametrize("pack", ["first_fit", "t5"])
def test_packed_rows_never_mix_examples(beauty, pack):
    """A packed batch's loss and every token's log-probability equal those of its examples padded
    one to a row: attention and loss stay inside each segment."""
    from recjax.config import T5Config
    from recjax.model import EncoderDecoderModel

    lengths = {"inputs": 256, "targets": 32}
    cfg = DatasetConfig("beautynp_rec_aux", lengths, batch_size=8, seed=4, pack=pack, loader="grain")
    packed = next(_grain(cfg))
    examples = _segments(packed)
    assert len(examples) > 8  # rows really hold several examples
    model = EncoderDecoderModel(T5Config(vocab_size=32128, emb_dim=32, num_heads=2, head_dim=8, num_encoder_layers=2,
                                         num_decoder_layers=2, mlp_dim=64))
    params = model.init_params(jax.random.PRNGKey(0))
    loss_packed, sums_packed = model.loss_sums(params, packed)
    loss_padded, sums_padded = model.loss_sums(params, grain_loader.pad(examples, lengths))
    assert float(sums_packed["target_tokens"]) == float(sums_padded["target_tokens"])
    np.testing.assert_allclose(float(loss_packed), float(loss_padded), rtol=1e-5)
    logits = np.asarray(model.logits(params, packed))
    first = logits[0][packed["decoder_segment_ids"][0] == 2]  # the second example of row 0, inside the row
    alone = np.asarray(model.logits(params, grain_loader.pad([examples[1]], lengths)))[0][:len(first)]
    np.testing.assert_allclose(first, alone, rtol=1e-4, atol=1e-4)


def test_unknown_name_loader_and_packing_are_one_line_errors(beauty):
    with pytest.raises(ValueError, match="loader 'numpy' is now 'grain'"):
        DatasetConfig("beautynp_rec", {"inputs": 8, "targets": 8}, loader="numpy")
    with pytest.raises(ValueError, match="DatasetConfig.loader must be one of"):
        DatasetConfig("beautynp_rec", {"inputs": 8, "targets": 8}, loader="tfds")
    with pytest.raises(ValueError, match="pack = 'first_fit' needs loader = 'grain'"):
        DatasetConfig("beautynp_rec", {"inputs": 8, "targets": 8}, pack="first_fit")
    with pytest.raises(ValueError, match="pack must be False, True"):
        DatasetConfig("beautynp_rec", {"inputs": 8, "targets": 8}, pack="best", loader="grain")
    cfg = DatasetConfig("beautynp_nope", {"inputs": 8, "targets": 8}, loader="grain")
    with pytest.raises(ValueError, match="unknown task or mixture 'beautynp_nope'; registered: .*beautynp_rec"):
        _grain(cfg)


TRAIN_WITHOUT_TF = r'''
import sys
for name in ("tensorflow", "seqio", "tensorflow_datasets", "tensorflow_text"):
    sys.modules[name] = None  # as if not installed
import hashlib, json
import numpy as np
import tasks
from recjax import input_pipeline, train_lib
from recjax.config import T5Config
from recjax.config import EOS_ID
from recjax.input_pipeline import DatasetConfig

data_dir, vocab_path, model_dir = sys.argv[1:4]
tasks.register_dataset(data_dir, "beautynp", vocab_path, shuffle_buffer_size=None, mixture_rates={"ranking": 3.0})
cfg = DatasetConfig("beautynp_retrieval", {"inputs": 256, "targets": 16}, batch_size=32, seed=3, loader="grain")
it = input_pipeline.BatchIterator(cfg, process_index=0, process_count=1)
digest = hashlib.sha256(b"".join(next(it)["encoder_input_tokens"].tobytes() for _ in range(5))).hexdigest()
config = T5Config(vocab_size=32128, emb_dim=32, num_heads=2, head_dim=8, num_encoder_layers=1, num_decoder_layers=1,
                  mlp_dim=48)
state = train_lib.train(model_dir=model_dir, mixture_or_task_name="beautynp_rec_aux",
                        task_feature_lengths={"inputs": 128, "targets": 64}, train_steps=4, batch_size=8,
                        model_config=config, progress=False, async_checkpointing=False, loader="grain")
it.close()
assert "tensorflow" not in [m for m in sys.modules if sys.modules[m] is not None], "TensorFlow was imported"
print(json.dumps({"digest": digest, "step": int(state.step)}))
'''


def test_training_runs_with_tensorflow_and_seqio_blocked(beauty, t5_vocab_path, tmp_path):
    """A real Beauty run trains through the Grain loader in a process where TensorFlow and SeqIO
    cannot be imported, and reads the same batches as this process's loader."""
    import hashlib
    import json

    env = dict(os.environ, PYTHONPATH=str(REPO), XLA_FLAGS="--xla_force_host_platform_device_count=1")
    proc = subprocess.run([sys.executable, "-c", TRAIN_WITHOUT_TF, beauty.data_dir, str(t5_vocab_path),
                           str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["step"] == 4
    cfg = DatasetConfig("beautynp_retrieval", {"inputs": 256, "targets": 16}, batch_size=32, seed=3, loader="grain")
    it = _grain(cfg)
    want = hashlib.sha256(b"".join(next(it)["encoder_input_tokens"].tobytes() for _ in range(5))).hexdigest()
    assert out["digest"] == want


@pytest.mark.parametrize("task", ["beautynp_retrieval", "beautynp_ranking", "beautynp_mlm"])
def test_evaluation_examples_equal_seqios(beauty, task):
    """What the evaluator reads (recjax.task_rows, no TensorFlow) is the SeqIO
    task's test split, example for example and feature for feature."""
    import seqio

    from recjax.evaluation import load_examples

    ds = seqio.get_mixture_or_task(task).get_dataset(sequence_length=None, split="test", shuffle=False, num_epochs=1,
                                                     use_cached=False)
    got = load_examples(task, "test")
    n = 0
    for want, row in zip(ds.as_numpy_iterator(), got):
        assert sorted(want) == sorted(row)
        for key, value in want.items():
            if isinstance(value, bytes):
                assert row[key] == value.decode("utf-8"), key
            else:
                np.testing.assert_array_equal(row[key], value, err_msg=key)
        n += 1
    assert n == len(got) == beauty.builder.num_users
