"""The TensorFlow-free loader (#14 item 3) against SeqIO's on real Beauty: array for array, packed
and unpacked, text tasks and the pre-tokenized MLM task; the same resumable position and the
same multi-host rows; mixtures by their rates; and training with TensorFlow and SeqIO blocked."""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import tasks
from recjax import input_pipeline
from recjax.input_pipeline import DatasetConfig

pytestmark = pytest.mark.slow  # integration tier: `pytest -m "not slow"` leaves it out

REPO = pathlib.Path(__file__).resolve().parent.parent
BATCHES = 150


@pytest.fixture(scope="module")
def beauty(shared_data, t5_vocab_path, tmp_path_factory):
    from recjax.cli import prepare

    out = tmp_path_factory.mktemp("beauty_np") / "beauty"
    assert prepare.main(["--format", "p5", "--src", str(shared_data / "beauty"), "--out", str(out), "--no-tfds"]) == 0
    # shuffle_buffer_size=None: the source's seeded shuffle only, which the numpy loader replays.
    return tasks.register_dataset(str(out), "beautynp", str(t5_vocab_path), shuffle_buffer_size=None,
                                  mixture_rates={"ranking": 3.0})


def _both(cfg: DatasetConfig, n: int):
    seqio_it = input_pipeline.build_dataset(cfg, process_index=0, process_count=1).as_numpy_iterator()
    numpy_it = input_pipeline.numpy_batches(cfg, process_index=0, process_count=1)
    return [next(seqio_it) for _ in range(n)], [next(numpy_it) for _ in range(n)]


@pytest.mark.parametrize("task,pack,lengths", [
    ("beautynp_retrieval", False, {"inputs": 256, "targets": 16}),
    ("beautynp_retrieval", True, {"inputs": 512, "targets": 16}),
    ("beautynp_mlm", True, {"inputs": 256, "targets": 64}),
    ("beautynp_ranking", False, {"inputs": 128, "targets": 8}),  # inputs trimmed: EOS after the cut
])
def test_numpy_loader_gives_seqios_batches(beauty, task, pack, lengths):
    cfg = DatasetConfig(task, lengths, split="train", batch_size=32, shuffle=True, seed=3, pack=pack)
    want, got = _both(cfg, BATCHES)
    for i, (a, b) in enumerate(zip(want, got)):
        assert sorted(a) == sorted(b), (i, sorted(a), sorted(b))
        for key in a:
            np.testing.assert_array_equal(b[key], a[key], err_msg=f"batch {i} {key}")
    if pack:
        assert max(int(b["encoder_segment_ids"].max()) for b in got) > 1  # rows really hold several examples


def test_numpy_loader_resumes_and_splits_rows_like_seqio(beauty):
    cfg = DatasetConfig("beautynp_retrieval", {"inputs": 128, "targets": 16}, batch_size=8, seed=1, loader="numpy")
    full = list(zip(range(12), input_pipeline.numpy_batches(cfg, process_index=0, process_count=1)))
    resumed = input_pipeline.BatchIterator(cfg, batches_consumed=7, process_index=0, process_count=1)
    for i in range(7, 12):
        batch = next(resumed)
        np.testing.assert_array_equal(batch["encoder_input_tokens"], full[i][1]["encoder_input_tokens"])
    assert resumed.state()["batches_consumed"] == 12
    second = next(input_pipeline.numpy_batches(cfg, process_index=1, process_count=2))
    np.testing.assert_array_equal(second["decoder_target_tokens"], full[0][1]["decoder_target_tokens"][4:])


def test_numpy_mixture_follows_the_rates_and_is_deterministic(beauty):
    from recjax import numpy_loader

    lengths = {"inputs": 512, "targets": 8}
    draw = lambda: list(zip(range(2000), numpy_loader.mixture_examples("beautynp_rec", "train", lengths, seed=5,
                                                                            shuffle=True, num_epochs=None)))
    first, again = draw(), draw()
    assert all(np.array_equal(a[1]["inputs"], b[1]["inputs"]) for a, b in zip(first, again))
    # Every ranking template names the candidates before listing them; no retrieval template does.
    tok = beauty.tokenizer
    ranking = sum("andidate" in tok.DecodeIds([int(t) for t in ex["inputs"]]) for _, ex in first)
    assert abs(ranking / len(first) - 0.75) < 0.04, ranking / len(first)  # rates 3 : 1


def test_unknown_name_and_loader_are_one_line_errors(beauty):
    with pytest.raises(ValueError, match="DatasetConfig.loader must be one of"):
        DatasetConfig("beautynp_rec", {"inputs": 8, "targets": 8}, loader="grain")
    cfg = DatasetConfig("beautynp_nope", {"inputs": 8, "targets": 8}, loader="numpy")
    with pytest.raises(ValueError, match="unknown task or mixture 'beautynp_nope'; registered: .*beautynp_rec"):
        next(input_pipeline.numpy_batches(cfg, process_index=0, process_count=1))


TRAIN_WITHOUT_TF = r'''
import sys
for name in ("tensorflow", "seqio", "tensorflow_datasets", "tensorflow_text"):
    sys.modules[name] = None  # as if not installed
import hashlib, json
import numpy as np
import tasks
from recjax import input_pipeline, train_lib
from recjax.config import T5Config
from recjax.input_pipeline import DatasetConfig

data_dir, vocab_path, model_dir = sys.argv[1:4]
tasks.register_dataset(data_dir, "beautynp", vocab_path, shuffle_buffer_size=None, mixture_rates={"ranking": 3.0})
cfg = DatasetConfig("beautynp_retrieval", {"inputs": 256, "targets": 16}, batch_size=32, seed=3, loader="numpy")
it = input_pipeline.BatchIterator(cfg, process_index=0, process_count=1)
digest = hashlib.sha256(b"".join(next(it)["encoder_input_tokens"].tobytes() for _ in range(5))).hexdigest()
config = T5Config(vocab_size=32128, emb_dim=32, num_heads=2, head_dim=8, num_encoder_layers=1, num_decoder_layers=1,
                  mlp_dim=48)
state = train_lib.train(model_dir=model_dir, mixture_or_task_name="beautynp_rec_aux",
                        task_feature_lengths={"inputs": 128, "targets": 64}, train_steps=4, batch_size=8,
                        model_config=config, progress=False, async_checkpointing=False, loader="numpy")
assert "tensorflow" not in [m for m in sys.modules if sys.modules[m] is not None], "TensorFlow was imported"
print(json.dumps({"digest": digest, "step": int(state.step)}))
'''


def test_training_runs_with_tensorflow_and_seqio_blocked(beauty, t5_vocab_path, tmp_path):
    """A real Beauty run trains through the numpy loader in a process where TensorFlow and SeqIO
    cannot be imported, and reads the same batches as this process's loader."""
    import hashlib
    import json

    env = dict(os.environ, PYTHONPATH=str(REPO), XLA_FLAGS="--xla_force_host_platform_device_count=1")
    proc = subprocess.run([sys.executable, "-c", TRAIN_WITHOUT_TF, beauty.data_dir, str(t5_vocab_path),
                           str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["step"] == 4
    cfg = DatasetConfig("beautynp_retrieval", {"inputs": 256, "targets": 16}, batch_size=32, seed=3, loader="numpy")
    it = input_pipeline.numpy_batches(cfg, process_index=0, process_count=1)
    want = hashlib.sha256(b"".join(next(it)["encoder_input_tokens"].tobytes() for _ in range(5))).hexdigest()
    assert out["digest"] == want


@pytest.mark.parametrize("task", ["beautynp_retrieval", "beautynp_ranking", "beautynp_mlm"])
def test_evaluation_examples_equal_seqios(beauty, task):
    """What the evaluator reads (recjax.numpy_loader.task_rows, no TensorFlow) is the SeqIO
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
