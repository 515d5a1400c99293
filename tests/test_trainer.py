"""The trainer: strategies agree with one device, loss falls, SIGKILL + resume is bit-exact,
two processes equal one, and bad configuration fails before any work. What goes wrong in a run
(corrupt checkpoints, full disks, signals during compilation) is tests/test_trainer_faults.py."""
import json
import os
import re
import signal
import subprocess
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
from tests.trainer_runs import GRAIN, GRAIN_PACKED, env, free_port, losses, train, train_cmd


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

@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
    """Six steps on the SeqIO path, uninterrupted."""
    root = tmp_path_factory.mktemp("train")
    data_dir = root / "data"
    return root, data_dir, train(root / "uninterrupted", data_dir)


def test_train_writes_operative_config_metrics_and_loss_falls(uninterrupted_run):
    _, _, model_dir = uninterrupted_run
    config = (model_dir / "config.gin").read_text()
    assert "train_steps = %TRAIN_STEPS" in config and "TRAIN_STEPS = 6" in config
    by_step = losses(model_dir)
    assert sorted(by_step) == [1, 2, 3, 4, 5, 6]
    assert by_step[6] < by_step[1]
    rows = [json.loads(line) for line in open(model_dir / "metrics.jsonl")]
    train_rows = [r for r in rows if r["split"] == "train"]
    # Real tokens and examples: 8 padded rows a step (log_period 1).
    assert all(0 < r["input_fill"] <= 1 and r["input_tokens_per_sec"] > 0 for r in train_rows)
    assert all(abs(r["examples_per_sec"] / r["steps_per_sec"] - 8) < 0.5 for r in train_rows)
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(model_dir / "train"))
    assert checkpoints.latest_step(str(model_dir / "checkpoints")) == 6


@pytest.fixture(scope="module")
def uninterrupted_grain_run(uninterrupted_run):
    """The same six steps on the Grain path with first-fit packing."""
    root, data_dir, _ = uninterrupted_run
    return root, data_dir, train(root / "uninterrupted_grain", data_dir, extra=GRAIN_PACKED)


@pytest.mark.parametrize("loader", ["seqio", "grain"])
def test_sigkill_and_resume_gives_bit_identical_params(loader, request):
    root, data_dir, reference_dir = request.getfixturevalue(
        "uninterrupted_run" if loader == "seqio" else "uninterrupted_grain_run")
    extra = GRAIN_PACKED if loader == "grain" else ()
    model_dir = root / f"killed_{loader}"
    proc = subprocess.Popen(train_cmd(model_dir, data_dir, extra=extra), cwd=REPO_ROOT, env=env(),
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
    resumed_run = subprocess.run(train_cmd(model_dir, data_dir, extra=extra), cwd=REPO_ROOT, env=env(), check=True,
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
def test_sigterm_saves_its_step_exits_143_and_the_resumed_run_is_bit_identical(uninterrupted_grain_run, during):
    """A preemption notice (SIGTERM) while steps run, or while every step validates and saves:
    the run saves the step it is at (the Grain position with it), says so in one line and exits
    143; rerunning resumes there and ends with the uninterrupted run's parameters."""
    root, data_dir, reference_dir = uninterrupted_grain_run
    model_dir = root / f"sigterm_{during.split()[0]}"
    extra = GRAIN_PACKED + (() if during == "steps" else ("--gin.train_lib.train.checkpoint_period=1",
                                                          "--gin.train_lib.train.eval_period=1"))
    proc = subprocess.Popen(train_cmd(model_dir, data_dir, extra=extra), cwd=REPO_ROOT, env=env(),
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
    subprocess.run(train_cmd(model_dir, data_dir, extra=extra), cwd=REPO_ROOT, env=env(), check=True, timeout=600,
                   capture_output=True)
    resumed, _ = checkpoints.restore_params(str(model_dir / "checkpoints"))
    reference, _ = checkpoints.restore_params(str(reference_dir / "checkpoints"))
    for key, value in param_tree.flatten_params(reference).items():
        np.testing.assert_array_equal(param_tree.flatten_params(resumed)[key], value, err_msg=key)


def test_two_processes_match_one_process(uninterrupted_run):
    root, data_dir, reference_dir = uninterrupted_run
    model_dir, port = root / "two_process", free_port()
    procs = [subprocess.Popen(train_cmd(model_dir, data_dir, steps=3, extra=(
        f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}")),
        cwd=REPO_ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-2000:]
    two, one = losses(model_dir), losses(reference_dir)
    np.testing.assert_allclose([two[s] for s in (1, 2, 3)], [one[s] for s in (1, 2, 3)], rtol=1e-5)


def test_sigterm_to_one_of_two_processes_stops_both_at_the_same_step(uninterrupted_run):
    root, data_dir, _ = uninterrupted_run
    model_dir, port = root / "sigterm_two", free_port()
    procs = [subprocess.Popen(train_cmd(model_dir, data_dir, steps=40, extra=(
        f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}")),
        cwd=REPO_ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(2)]
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
    train(root / "grain_one", data_dir, steps=3, extra=GRAIN)
    model_dir, port = root / "grain_two", free_port()
    procs = [subprocess.Popen(train_cmd(model_dir, data_dir, steps=3, extra=GRAIN + (
        f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}")),
        cwd=REPO_ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-2000:]
    two, one = losses(model_dir), losses(root / "grain_one")
    np.testing.assert_allclose([two[s] for s in (1, 2, 3)], [one[s] for s in (1, 2, 3)], rtol=1e-5)
    positions = sorted(os.listdir(model_dir / "checkpoints" / "2" / "input_iterator"))
    assert positions == ["commit_success.txt", "process_0-of-2.json", "process_1-of-2.json"], positions
