"""The trainer: strategies agree with one device, loss falls, SIGKILL + resume is bit-exact,
two processes equal one, and bad configuration fails before any work."""
import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
import pytest

from recjax import checkpoints, optimizers, param_tree, partitioning
from recjax.config import T5Config
from recjax.model import EncoderDecoderModel
from recjax.model_inputs import shift_right
from recjax.trainer import Trainer

from conftest import REPO_ROOT

pytestmark = pytest.mark.slow  # integration tier: `pytest -m "not slow"` leaves it out

TINY = T5Config(vocab_size=128, emb_dim=16, num_heads=4, head_dim=4, num_encoder_layers=2, num_decoder_layers=2,
                mlp_dim=32)


def _random_batch(batch: int = 16, enc: int = 12, dec: int = 6, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    targets = rng.integers(2, TINY.vocab_size, (batch, dec)).astype(np.int32)
    targets[::3, -2:] = 0  # some padding, so the loss normalizer matters
    return {"encoder_input_tokens": rng.integers(2, TINY.vocab_size, (batch, enc)).astype(np.int32),
            "decoder_target_tokens": targets,
            "decoder_input_tokens": np.asarray(shift_right(targets)),
            "decoder_loss_weights": (targets > 0).astype(np.float32)}


def _run(strategy: str, data: int, model: int, microbatches: int = 1, steps: int = 3):
    mesh = partitioning.make_mesh(data, model, jax.devices()[:data * model])
    trainer = Trainer(EncoderDecoderModel(TINY), optimizers.adafactor(), partitioning.Partitioner(mesh, strategy),
                      num_microbatches=microbatches)
    state = trainer.init_state()
    losses = []
    for _ in range(steps):
        state, metrics = trainer.train_step(state, trainer.shard_batch(_random_batch()))
        losses.append(float(metrics["loss"]))
    return losses, jax.device_get(state.params), state


def test_strategies_on_8_devices_match_one_device():
    reference, ref_params, _ = _run("data_parallel", 1, 1)
    assert reference[-1] < reference[0]
    for strategy, data, model, micro in [("data_parallel", 8, 1, 1), ("fsdp", 4, 2, 1),
                                         ("tensor_parallel", 2, 4, 1), ("data_parallel", 4, 1, 2)]:
        losses, params, state = _run(strategy, data, model, micro)
        # Same math, different reduction order across shards: float32 round-off only.
        np.testing.assert_allclose(losses, reference, rtol=2e-6, err_msg=f"{strategy} {data}x{model} micro={micro}")
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params)):
            np.testing.assert_allclose(a, b, atol=2e-6, rtol=1e-5)
        kernel = state.params["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"]
        expected_spec = {"data_parallel": (None, None), "fsdp": ("data", "model"),
                         "tensor_parallel": (None, "model")}[strategy]
        assert tuple(kernel.sharding.spec) == expected_spec, (strategy, kernel.sharding.spec)


def test_fsdp_shards_adafactor_state_like_params():
    mesh = partitioning.make_mesh(4, 2, jax.devices())
    trainer = Trainer(EncoderDecoderModel(TINY), optimizers.adafactor(min_dim_size_to_factor=8),
                      partitioning.Partitioner(mesh, "fsdp"))
    specs = {tuple(s.spec) for s in jax.tree.leaves(trainer.state_shardings.opt_state)}
    # Factored second moments of [embed, mlp] kernels: v_row over `data`, v_col over `model`.
    assert ("data",) in specs and ("model",) in specs


def test_bad_mesh_and_batch_fail_before_work():
    with pytest.raises(ValueError, match="does not divide the 8 devices"):
        partitioning.make_mesh(-1, 3)
    with pytest.raises(ValueError, match="but there are 8 devices"):
        partitioning.make_mesh(4, 4)
    mesh = partitioning.make_mesh(8, 1)
    with pytest.raises(ValueError, match="not divisible by the mesh's data axis"):
        partitioning.check_batch_divisible(12, mesh)
    with pytest.raises(ValueError, match="unknown sharding strategy"):
        partitioning.rules_for("zero9")


@pytest.mark.parametrize("binding,value", [("train_steps", None), ("train_steps", 0), ("batch_size", 2.5),
                                           ("eval_period", -1), ("checkpoint_period", True)])
def test_non_positive_or_non_int_counts_fail_before_work(tmp_path, binding, value):
    from recjax import train_lib
    kwargs = dict(model_dir=str(tmp_path / "run"), mixture_or_task_name="unused", task_feature_lengths={},
                  train_steps=10, model_config=TINY)
    kwargs[binding] = value
    # Gin appends an "In call to configurable" line; the first line is what the binary prints.
    with pytest.raises(ValueError, match=rf"^train_lib\.train\.{binding} must be a positive int, got {re.escape(repr(value))}\n"):
        train_lib.train(**kwargs)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# The `recjax train` binary on the embedded synthetic dataset, in subprocesses (one CPU device).
# ---------------------------------------------------------------------------------------------

def _train_cmd(model_dir, data_dir, steps=6, extra=()):
    return [sys.executable, "-m", "recjax.train", "--gin_file=gin/experiments/quickstart.gin",
            f"--gin.MODEL_DIR='{model_dir}'", f"--gin.TRAIN_STEPS={steps}", "--gin.BATCH_SIZE=8",
            "--gin.TASK_FEATURE_LENGTHS={'inputs': 96, 'targets': 16}",
            f"--gin.embedded_synthetic_dataset.out_dir='{data_dir}'",
            "--gin.embedded_synthetic_dataset.num_users=200", "--gin.embedded_synthetic_dataset.num_items=80",
            "--gin.tasks.register_dataset.num_negatives=19",
            "--gin.tasks.dataset_vocabulary.vocab_size=500", "--gin.VOCAB_SIZE=640",
            "--gin.train_lib.train.checkpoint_period=2", "--gin.train_lib.train.log_period=1",
            "--gin.train_lib.train.progress=False",
            # The quickstart's end-of-run evaluation is tested in tests/test_eval.py.
            "--gin.train_lib.train.eval_period=None", "--gin.train_lib.train.evaluator=None", *extra]


# The subprocesses compile the same few programs: JAX's persistent compilation cache, shared by
# this module's runs, saves each later one its compilation (~4 of ~18 s here). The Ctrl-C test
# interrupts compilation and runs without it.
XLA_CACHE = tempfile.mkdtemp(prefix="recjax-test-xla-cache-")
atexit.register(shutil.rmtree, XLA_CACHE, True)


def _env(compilation_cache: bool = True):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if compilation_cache:
        env.update(JAX_COMPILATION_CACHE_DIR=XLA_CACHE, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                   JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return env


def _losses(model_dir):
    with open(os.path.join(model_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return {r["step"]: r["loss"] for r in rows if r["split"] == "train"}


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    data_dir, model_dir = root / "data", root / "uninterrupted"
    subprocess.run(_train_cmd(model_dir, data_dir), cwd=REPO_ROOT, env=_env(), check=True, timeout=600)
    return root, data_dir, model_dir


def test_train_writes_operative_config_metrics_and_loss_falls(uninterrupted_run):
    _, _, model_dir = uninterrupted_run
    config = (model_dir / "config.gin").read_text()
    assert "train_steps = %TRAIN_STEPS" in config and "TRAIN_STEPS = 6" in config
    losses = _losses(model_dir)
    assert sorted(losses) == [1, 2, 3, 4, 5, 6]
    assert losses[6] < losses[1]
    rows = [json.loads(line) for line in open(model_dir / "metrics.jsonl")]
    train_rows = [r for r in rows if r["split"] == "train"]
    # Real tokens and examples: 8 padded rows a step (log_period 1).
    assert all(0 < r["input_fill"] <= 1 and r["input_tokens_per_sec"] > 0 for r in train_rows)
    assert all(abs(r["examples_per_sec"] / r["steps_per_sec"] - 8) < 0.5 for r in train_rows)
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(model_dir / "train"))
    assert checkpoints.latest_step(str(model_dir / "checkpoints")) == 6


# The Grain path with first-fit packing: its position (the packer's state included) is saved
# with every checkpoint and restored on resume.
GRAIN = ("--gin.train_lib.train.loader='grain'", "--gin.train_lib.train.pack='first_fit'")


@pytest.fixture(scope="module")
def uninterrupted_grain_run(uninterrupted_run):
    root, data_dir, _ = uninterrupted_run
    model_dir = root / "uninterrupted_grain"
    subprocess.run(_train_cmd(model_dir, data_dir, extra=GRAIN), cwd=REPO_ROOT, env=_env(), check=True, timeout=600)
    return root, data_dir, model_dir


@pytest.mark.parametrize("loader", ["seqio", "grain"])
def test_sigkill_and_resume_gives_bit_identical_params(loader, request):
    root, data_dir, reference_dir = request.getfixturevalue(
        "uninterrupted_run" if loader == "seqio" else "uninterrupted_grain_run")
    extra = GRAIN if loader == "grain" else ()
    model_dir = root / f"killed_{loader}"
    proc = subprocess.Popen(_train_cmd(model_dir, data_dir, extra=extra), cwd=REPO_ROOT, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    try:  # kill as soon as the first checkpoint is committed, wherever the run is then
        while not (model_dir / "checkpoints" / "2").is_dir():
            assert proc.poll() is None, "training exited before its first checkpoint"
            assert time.time() < deadline
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert checkpoints.latest_step(str(model_dir / "checkpoints")) < 6
    resumed_run = subprocess.run(_train_cmd(model_dir, data_dir, extra=extra), cwd=REPO_ROOT, env=_env(), check=True,
                                 timeout=600, capture_output=True, text=True)
    assert "replaying" not in resumed_run.stderr
    with open(model_dir / "metrics.jsonl") as f:  # rows logged past the last checkpoint are not repeated
        steps = [json.loads(line)["step"] for line in f if json.loads(line)["split"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]
    resumed, _ = checkpoints.restore_params(str(model_dir / "checkpoints"))
    reference, _ = checkpoints.restore_params(str(reference_dir / "checkpoints"))
    for key, value in param_tree.flatten_params(reference).items():
        np.testing.assert_array_equal(param_tree.flatten_params(resumed)[key], value, err_msg=key)
    if loader == "grain":  # the position was restored, not replayed: the packer's state is the reference's
        position = lambda d: json.loads((d / "checkpoints" / "6" / "input_iterator" / "process_0-of-1.json").read_text())
        assert position(model_dir) == position(reference_dir) and position(model_dir)["parent"]["next_index"] > 0


@pytest.mark.parametrize("during", ["steps", "evaluations and saves"])
def test_sigterm_saves_its_step_exits_143_and_the_resumed_run_is_bit_identical(uninterrupted_run, during):
    """A preemption notice (SIGTERM) while steps run, or while every step validates and saves:
    the run saves the step it is at, says so in one line and exits 143; rerunning resumes there
    and ends with the uninterrupted run's parameters."""
    root, data_dir, reference_dir = uninterrupted_run
    model_dir = root / f"sigterm_{during.split()[0]}"
    extra = () if during == "steps" else ("--gin.train_lib.train.checkpoint_period=1",
                                          "--gin.train_lib.train.eval_period=1")
    proc = subprocess.Popen(_train_cmd(model_dir, data_dir, extra=extra), cwd=REPO_ROOT, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = model_dir / "checkpoints" / ("2" if during == "steps" else "1")
    deadline = time.time() + 600
    while not first.is_dir():
        assert proc.poll() is None, "training exited before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 143, err[-2000:]
    said = [line for line in err.splitlines() if "preempted" in line]
    assert len(said) == 1 and said[0].startswith("recjax train: preempted (SIGTERM) at step "), err[-2000:]
    stopped = int(re.search(r"at step (\d+)", said[0]).group(1))
    assert stopped < 6 and checkpoints.latest_step(str(model_dir / "checkpoints")) == stopped
    subprocess.run(_train_cmd(model_dir, data_dir, extra=extra), cwd=REPO_ROOT, env=_env(), check=True, timeout=600,
                   capture_output=True)
    resumed, _ = checkpoints.restore_params(str(model_dir / "checkpoints"))
    reference, _ = checkpoints.restore_params(str(reference_dir / "checkpoints"))
    for key, value in param_tree.flatten_params(reference).items():
        np.testing.assert_array_equal(param_tree.flatten_params(resumed)[key], value, err_msg=key)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process(uninterrupted_run):
    root, data_dir, reference_dir = uninterrupted_run
    model_dir, port = root / "two_process", _free_port()
    procs = [subprocess.Popen(_train_cmd(model_dir, data_dir, steps=3, extra=(
        f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}")),
        cwd=REPO_ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-2000:]
    two, one = _losses(model_dir), _losses(reference_dir)
    np.testing.assert_allclose([two[s] for s in (1, 2, 3)], [one[s] for s in (1, 2, 3)], rtol=1e-5)


def test_sigterm_to_one_of_two_processes_stops_both_at_the_same_step(uninterrupted_run):
    root, data_dir, _ = uninterrupted_run
    model_dir, port = root / "sigterm_two", _free_port()
    procs = [subprocess.Popen(_train_cmd(model_dir, data_dir, steps=40, extra=(
        f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}")),
        cwd=REPO_ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(2)]
    deadline = time.time() + 600
    while not (model_dir / "checkpoints" / "2").is_dir():
        assert all(p.poll() is None for p in procs) and time.time() < deadline
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGTERM)  # only the second process gets the notice
    said = []
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 143, err[-2000:]
        said += [int(m) for m in re.findall(r"preempted \(SIGTERM\) at step (\d+)", err)]
    assert len(said) == 2 and said[0] == said[1] < 40, said
    assert checkpoints.latest_step(str(model_dir / "checkpoints")) == said[0]


def test_two_processes_match_one_process_on_grain(uninterrupted_run):
    """Each process reads its own examples (p, p + P, ...) and keeps its own position."""
    root, data_dir, _ = uninterrupted_run
    grain = ("--gin.train_lib.train.loader='grain'",)
    subprocess.run(_train_cmd(root / "grain_one", data_dir, steps=3, extra=grain), cwd=REPO_ROOT, env=_env(),
                   check=True, timeout=600)
    model_dir, port = root / "grain_two", _free_port()
    procs = [subprocess.Popen(_train_cmd(model_dir, data_dir, steps=3, extra=grain + (
        f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}")),
        cwd=REPO_ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-2000:]
    two, one = _losses(model_dir), _losses(root / "grain_one")
    np.testing.assert_allclose([two[s] for s in (1, 2, 3)], [one[s] for s in (1, 2, 3)], rtol=1e-5)
    positions = sorted(os.listdir(model_dir / "checkpoints" / "2" / "input_iterator"))
    assert positions == ["commit_success.txt", "process_0-of-2.json", "process_1-of-2.json"], positions


def test_unknown_gin_binding_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "recjax.train", "--gin_file=gin/experiments/quickstart.gin",
         f"--gin.MODEL_DIR='{tmp_path}'", "--gin.train_lib.train.no_such_arg=1"],
        cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "no_such_arg" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "checkpoints").exists()


def test_checkpoint_dir_of_another_shape_is_refused_before_work(uninterrupted_run):
    _, data_dir, model_dir = uninterrupted_run
    result = subprocess.run(_train_cmd(model_dir, data_dir, extra=("--gin.T5Config.emb_dim=32",)), cwd=REPO_ROOT,
                            env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert "different model config (emb_dim " in message and " there, 32 here)" in message
    # A training-only field (dropout) may change on resume.
    resumed = root_copy(model_dir, "dropout_changed")
    result = subprocess.run(_train_cmd(resumed, data_dir, steps=7, extra=("--gin.DROPOUT_RATE=0.3",)), cwd=REPO_ROOT,
                            env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert checkpoints.latest_step(str(resumed / "checkpoints")) == 7


def root_copy(model_dir, name):
    copy = model_dir.parent / name
    shutil.copytree(model_dir, copy)
    return copy


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(uninterrupted_run):
    root, data_dir, good_dir = uninterrupted_run
    model_dir = root / "diverging"
    shutil.copytree(good_dir, model_dir)  # finished at step 6; go on with a learning rate that overflows
    result = subprocess.run(_train_cmd(model_dir, data_dir, steps=12, extra=(
        "--gin.LEARNING_RATE=1e30", "--gin.train_lib.train.checkpoint_period=1")),
        cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-2000:]
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("recjax train: error: step 7: loss is") and "The last good checkpoint is step 6" in message
    assert checkpoints.latest_step(str(model_dir / "checkpoints")) == 6
    params, _ = checkpoints.restore_params(str(model_dir / "checkpoints"))
    assert all(np.isfinite(v).all() for v in param_tree.flatten_params(params).values())


@pytest.mark.parametrize("fault", ["truncated_to_a_third", "truncated_to_half", "truncated_to_nine_tenths", "deleted",
                                   "no_metadata"])
def test_corrupt_checkpoint_is_one_line_and_train_falls_back_to_the_newest_intact(uninterrupted_run, fault):
    """A truncated (at several points) or deleted tensor file, or a missing _METADATA, in the newest
    step: reading it (on the host, and onto the mesh as train does) is one line naming the step and
    the tensor, and `train` resumes from the step before it."""
    root, data_dir, good_dir = uninterrupted_run
    model_dir = root / f"corrupt_{fault}"
    shutil.copytree(good_dir, model_dir)
    ckpt = model_dir / "checkpoints"
    params_dir = ckpt / "6" / "params"
    if fault == "no_metadata":
        os.remove(params_dir / "_METADATA")
        blamed = f"{params_dir / '_METADATA'}: missing; checkpoint step 6 is corrupt"
    else:
        data = max((p for p in params_dir.rglob("*") if p.is_file() and p.parent.name == "d"),
                   key=lambda p: p.stat().st_size)  # params/d/ or params/ocdbt.process_0/d/
        if fault.startswith("truncated"):
            fraction = {"truncated_to_a_third": 1 / 3, "truncated_to_half": 1 / 2, "truncated_to_nine_tenths": 0.9}[fault]
            with open(data, "r+b") as f:
                f.truncate(int(data.stat().st_size * fraction))
        else:
            os.remove(data)
        blamed = f"{ckpt / '6'}: checkpoint step 6 is corrupt (tensor "
    with pytest.raises(checkpoints.CorruptCheckpointError) as info:
        checkpoints.restore_params(str(ckpt))
    assert blamed in str(info.value) and "\n" not in str(info.value)
    result = subprocess.run(_train_cmd(model_dir, data_dir, steps=8), cwd=REPO_ROOT, env=_env(), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and blamed in warning[0] and "resuming from step 4" in warning[0], result.stderr[-2000:]
    assert (ckpt / "corrupt-6").is_dir() and checkpoints.latest_step(str(ckpt)) == 8
    assert sorted(_losses(model_dir)) == list(range(1, 9))  # steps 5 and 6 trained again


def test_a_run_failing_before_its_first_step_writes_nothing(uninterrupted_run, tmp_path):
    """Refused before the input pipeline starts (batch 8 in 3 microbatches), or failing at the
    first step (non-finite params): MODEL_DIR stays empty, so another model may use it next."""
    _, data_dir, _ = uninterrupted_run
    model_dir = tmp_path / "run"
    result = subprocess.run(_train_cmd(model_dir, data_dir, extra=("--gin.NUM_MICROBATCHES=3",)), cwd=REPO_ROOT,
                            env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "must split into 3 microbatches" in result.stderr.strip().splitlines()[-1]
    assert not model_dir.exists()
    result = subprocess.run(_train_cmd(model_dir, data_dir, extra=("--gin.LEARNING_RATE=1e30",)), cwd=REPO_ROOT,
                            env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "step 1:" in result.stderr.strip().splitlines()[-1]
    assert not model_dir.exists()
    result = subprocess.run(_train_cmd(model_dir, data_dir, steps=2, extra=("--gin.T5Config.emb_dim=32",)),
                            cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_rows_logged_past_the_last_checkpoint_are_not_duplicated(uninterrupted_run):
    """A kill between logging step 7 and checkpointing it: the resumed run trains 7 again and
    metrics.jsonl keeps one row per step."""
    root, data_dir, good_dir = uninterrupted_run
    model_dir = root_copy(good_dir, "logged_past_checkpoint")
    with open(model_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 7, "split": "train", "loss": 123.0}) + "\n")
    subprocess.run(_train_cmd(model_dir, data_dir, steps=8), cwd=REPO_ROOT, env=_env(), check=True, timeout=600)
    with open(model_dir / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert [r["step"] for r in rows if r["split"] == "train"] == list(range(1, 9))
    assert all(r["loss"] != 123.0 for r in rows)


def test_rerunning_a_finished_run_says_so_and_logs_the_end_evaluation_as_test(uninterrupted_run, tmp_path):
    """The quickstart's end-of-run evaluation (TrainEvaluator on the test split) is logged as
    `test`; running the finished run again trains nothing and prints its last metrics."""
    _, data_dir, _ = uninterrupted_run
    model_dir = tmp_path / "finished"
    extra = ("--gin.train_lib.train.eval_period=2", "--gin.train_lib.train.evaluator=@evaluation.TrainEvaluator()",
             "--gin.evaluation.EvalOptions.max_examples=16")
    cmd = _train_cmd(model_dir, data_dir, steps=2)
    cmd = [a for a in cmd if not a.startswith(("--gin.train_lib.train.eval_period", "--gin.train_lib.train.evaluator"))]
    first = subprocess.run(cmd + list(extra), cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    with open(model_dir / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert any(r["split"] == "test" and "retrieval/ndcg@10" in " ".join(r) for r in rows), rows
    # The run ends with its summary: a table of the headline metrics and where everything went.
    out = first.stdout
    assert "done: step 2 (2 steps in " in out and "evaluation at step 2 (test):" in out, out
    assert "| task | hit@10 | ndcg@10 | hr@1 |" in out and "| synthetic_retrieval | " in out, out
    assert f"written to {model_dir}:" in out and "config.gin" in out and "metrics.jsonl" in out, out
    assert max(len(line) for line in out.splitlines()) < 200, out  # no 1,000-character line of metrics
    assert not any(r["split"] == "validation" and any("ndcg" in k for k in r) for r in rows)
    again = subprocess.run(cmd + list(extra), cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{model_dir}: already at step 2 of 2; nothing to train" in again.stdout
    assert "last test metrics (step 2):" in again.stdout and "last train metrics (step 2): accuracy" in again.stdout


def _mount_tmpfs(path, options):
    """A real small / read-only filesystem (root only); False where the machine does not allow it."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_read_only_model_dir_is_one_line_before_any_work(uninterrupted_run, tmp_path):
    _, data_dir, _ = uninterrupted_run
    mount = tmp_path / "ro"
    mounted = _mount_tmpfs(mount, "ro,size=1m")
    if not mounted:
        if os.geteuid() == 0:
            pytest.skip("root ignores permission bits, and no read-only tmpfs can be mounted here")
        os.chmod(mount, 0o555)  # a non-root user cannot write here either
    try:
        result = subprocess.run(_train_cmd(mount / "run", data_dir), cwd=REPO_ROOT, env=_env(), capture_output=True,
                                text=True, timeout=300)
    finally:
        if mounted:
            subprocess.run(["umount", str(mount)], check=True)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (f"recjax train: error: {mount / 'run'}: MODEL_DIR is not writable "
                                                      f"({mount}: Read-only file system)" if mounted else
                                                      f"recjax train: error: {mount / 'run'}: MODEL_DIR is not writable "
                                                      f"({mount}: Permission denied)")


def test_a_full_disk_fails_the_save_of_its_step_in_one_line(uninterrupted_run, tmp_path):
    """MODEL_DIR on a 160 KB filesystem: config and logs fit, the step-2 checkpoint does not; the
    run stops with one line naming step 2 (not a traceback at a later save)."""
    _, data_dir, _ = uninterrupted_run
    mount = tmp_path / "small"
    if not _mount_tmpfs(mount, "size=160k"):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        result = subprocess.run(_train_cmd(mount / "run", data_dir, steps=6), cwd=REPO_ROOT, env=_env(),
                                capture_output=True, text=True, timeout=300)
        rows = [json.loads(line) for line in open(mount / "run" / "metrics.jsonl")]
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"recjax train: error: saving checkpoint step 2 in {mount / 'run' / 'checkpoints'} failed: "), last
    assert "No space left on device" in last
    assert "Traceback" not in result.stderr and "exception was never retrieved" not in result.stderr
    assert max(r["step"] for r in rows) <= 4  # stopped by the next save at the latest (orbax raises it there)


@pytest.mark.slow
def test_ctrl_c_during_compilation_exits_130_in_one_line(uninterrupted_run, tmp_path):
    """Ctrl-C at several moments of the first step's compilation: exit 130 every time (it was
    swallowed about one time in five, or crashed the allocator), in one line."""
    _, data_dir, _ = uninterrupted_run
    for attempt, delay in enumerate((0.0, 0.3, 0.8, 1.5, 3.0)):
        cmd = [a for a in _train_cmd(tmp_path / f"run{attempt}", data_dir) if a != "--gin.train_lib.train.progress=False"]
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=_env(compilation_cache=False), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        seen = ""
        while "train:" not in seen:  # the progress bar appears just before the first step compiles
            char = proc.stderr.read(1)
            assert char, f"train exited early: {seen[-2000:]}"
            seen += char
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        rest = proc.stderr.read()
        proc.wait(timeout=300)
        assert proc.returncode == 130, (delay, (seen + rest)[-3000:])
        assert rest.strip().splitlines()[-1] == "recjax train: interrupted", (delay, rest[-2000:])


def _progress_steps(text: str, total: int) -> list[int]:
    return [int(n) for n in re.findall(rf"train:\s+\d+%\|[^|]*\|\s*(\d+)/{total}", text)]


@pytest.mark.slow
@pytest.mark.parametrize("stream", ["file", "terminal"])
def test_the_progress_bar_updates_while_the_run_goes_on(uninterrupted_run, tmp_path, stream):
    """`recjax train` shows its progress during the run, in a log file (one plain line per update,
    no carriage return or cursor escape) and on a terminal (redrawn in place), through the stderr
    filter that keeps TensorStore's closed-event-loop tracebacks out."""
    _, data_dir, _ = uninterrupted_run
    steps = 40
    cmd = [a for a in _train_cmd(tmp_path / "run", data_dir, steps=steps, extra=("--gin.train_lib.train.checkpoint_period=1000",))
           if a != "--gin.train_lib.train.progress=False"]
    env = dict(_env(), RECJAX_PROGRESS_SECONDS="0")
    seen_during_run: list[int] = []
    if stream == "file":
        log = tmp_path / "train.log"
        with open(log, "w") as f:
            proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=f, stderr=f)
            while proc.poll() is None:
                seen_during_run += _progress_steps(log.read_text(), steps)
                time.sleep(0.2)
        text = log.read_text()
        assert "\r" not in text and "\x1b" not in text, text[-2000:]
    else:
        import pty
        import select

        import fcntl
        import struct
        import termios

        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # 40 rows, 120 columns
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=slave, stderr=slave)
        os.close(slave)
        chunks = []
        while True:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536).decode(errors="replace")
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
            if proc.poll() is None:
                seen_during_run += _progress_steps("".join(chunks), steps)
        os.close(master)
        text = "".join(chunks)
        assert "\r" in text  # redrawn in place
    assert proc.wait(timeout=600) == 0, text[-3000:]
    assert [n for n in seen_during_run if 0 < n < steps], f"no progress while running: {text[-2000:]}"
    assert steps in _progress_steps(text, steps)  # and the bar's last state is the end


def test_export_takes_a_train_model_dir_in_both_formats(uninterrupted_run, tmp_path):
    """`recjax export --checkpoint MODEL_DIR` resolves MODEL_DIR/checkpoints for params_bf16 as it
    does for hf (params_bf16 looked the step up on the raw MODEL_DIR: a TypeError traceback)."""
    import ml_dtypes

    from recjax.cli import export

    _, _, model_dir = uninterrupted_run
    for fmt in ("params_bf16", "hf"):
        assert export.main(["--checkpoint", str(model_dir), "--out", str(tmp_path / fmt), "--format", fmt]) == 0
    assert checkpoints.latest_step(str(tmp_path / "params_bf16")) == 6  # the run's newest step
    bf16, config = checkpoints.restore_params(str(tmp_path / "params_bf16"))
    full, _ = checkpoints.restore_params(str(model_dir))
    assert config.param_dtype == "bfloat16"
    for a, b in zip(jax.tree.leaves(bf16), jax.tree.leaves(full)):
        assert a.dtype == ml_dtypes.bfloat16 and np.array_equal(a, np.asarray(b).astype(ml_dtypes.bfloat16))
    assert (tmp_path / "hf" / "model.safetensors").is_file()
