"""What goes wrong in a `recjax train` run is one line and leaves nothing stale: unknown
bindings, a checkpoint of another shape, a diverging loss, corrupt checkpoints (train falls back to
the newest intact step), a run failing before its first step, a read-only or full disk, Ctrl-C
during compilation; and the progress bar, the finished-run summary, export of a train MODEL_DIR.
The runs take the TensorFlow-free Grain path (the SeqIO path is tests/test_trainer.py's)."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from recjax import checkpoints, param_tree

from conftest import REPO_ROOT
from tests import trainer_runs
from tests.trainer_runs import env, losses, root_copy

pytestmark = pytest.mark.slow  # integration tier: `pytest -m "not slow"` leaves it out


def _train_cmd(model_dir, data_dir, steps=6, extra=()):
    return trainer_runs.train_cmd(model_dir, data_dir, steps, trainer_runs.GRAIN + tuple(extra))


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
    """Six steps on the Grain path, uninterrupted: the finished run the faults start from."""
    root = tmp_path_factory.mktemp("train")
    data_dir = root / "data"
    return root, data_dir, trainer_runs.train(root / "uninterrupted", data_dir, extra=trainer_runs.GRAIN)


def test_unknown_gin_binding_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "recjax.train", "--gin_file=gin/experiments/quickstart.gin",
         f"--gin.MODEL_DIR='{tmp_path}'", "--gin.train_lib.train.no_such_arg=1"],
        cwd=REPO_ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "no_such_arg" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "checkpoints").exists()


def test_checkpoint_dir_of_another_shape_is_refused_before_work(uninterrupted_run):
    _, data_dir, model_dir = uninterrupted_run
    result = subprocess.run(_train_cmd(model_dir, data_dir, extra=("--gin.T5Config.emb_dim=32",)), cwd=REPO_ROOT,
                            env=env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert "different model config (emb_dim " in message and " there, 32 here)" in message
    # A training-only field (dropout) may change on resume.
    resumed = root_copy(model_dir, "dropout_changed")
    result = subprocess.run(_train_cmd(resumed, data_dir, steps=7, extra=("--gin.DROPOUT_RATE=0.3",)), cwd=REPO_ROOT,
                            env=env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert checkpoints.latest_step(str(resumed / "checkpoints")) == 7


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(uninterrupted_run):
    root, data_dir, good_dir = uninterrupted_run
    model_dir = root / "diverging"
    shutil.copytree(good_dir, model_dir)  # finished at step 6; go on with a learning rate that overflows
    result = subprocess.run(_train_cmd(model_dir, data_dir, steps=12, extra=(
        "--gin.LEARNING_RATE=1e30", "--gin.train_lib.train.checkpoint_period=1")),
        cwd=REPO_ROOT, env=env(), capture_output=True, text=True, timeout=600)
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
    result = subprocess.run(_train_cmd(model_dir, data_dir, steps=8), cwd=REPO_ROOT, env=env(), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and blamed in warning[0] and "resuming from step 4" in warning[0], result.stderr[-2000:]
    assert (ckpt / "corrupt-6").is_dir() and checkpoints.latest_step(str(ckpt)) == 8
    assert sorted(losses(model_dir)) == list(range(1, 9))  # steps 5 and 6 trained again


def test_a_run_failing_before_its_first_step_writes_nothing(uninterrupted_run, tmp_path):
    """Refused before the input pipeline starts (batch 8 in 3 microbatches), or failing at the
    first step (non-finite params): MODEL_DIR stays empty, so another model may use it next."""
    _, data_dir, _ = uninterrupted_run
    model_dir = tmp_path / "run"
    result = subprocess.run(_train_cmd(model_dir, data_dir, extra=("--gin.NUM_MICROBATCHES=3",)), cwd=REPO_ROOT,
                            env=env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "must split into 3 microbatches" in result.stderr.strip().splitlines()[-1]
    assert not model_dir.exists()
    result = subprocess.run(_train_cmd(model_dir, data_dir, extra=("--gin.LEARNING_RATE=1e30",)), cwd=REPO_ROOT,
                            env=env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "step 1:" in result.stderr.strip().splitlines()[-1]
    assert not model_dir.exists()
    result = subprocess.run(_train_cmd(model_dir, data_dir, steps=2, extra=("--gin.T5Config.emb_dim=32",)),
                            cwd=REPO_ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_rows_logged_past_the_last_checkpoint_are_not_duplicated(uninterrupted_run):
    """A kill between logging step 7 and checkpointing it: the resumed run trains 7 again and
    metrics.jsonl keeps one row per step."""
    root, data_dir, good_dir = uninterrupted_run
    model_dir = root_copy(good_dir, "logged_past_checkpoint")
    with open(model_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 7, "split": "train", "loss": 123.0}) + "\n")
    trainer_runs.train(model_dir, data_dir, steps=8, extra=trainer_runs.GRAIN)
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
    first = subprocess.run(cmd + list(extra), cwd=REPO_ROOT, env=env(), capture_output=True, text=True, timeout=600)
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
    again = subprocess.run(cmd + list(extra), cwd=REPO_ROOT, env=env(), capture_output=True, text=True, timeout=600)
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
        result = subprocess.run(_train_cmd(mount / "run", data_dir), cwd=REPO_ROOT, env=env(), capture_output=True,
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
        result = subprocess.run(_train_cmd(mount / "run", data_dir, steps=6), cwd=REPO_ROOT, env=env(),
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
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env(compilation_cache=False), stdout=subprocess.DEVNULL,
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
    progress_env = dict(env(), RECJAX_PROGRESS_SECONDS="0")
    seen_during_run: list[int] = []
    if stream == "file":
        log = tmp_path / "train.log"
        with open(log, "w") as f:
            proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=progress_env, stdout=f, stderr=f)
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
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=progress_env, stdout=slave, stderr=slave)
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
