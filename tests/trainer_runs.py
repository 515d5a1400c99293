"""`recjax train` in subprocesses on the embedded synthetic dataset (one CPU device each): the
command, its environment, and what a run left behind. Shared by tests/test_trainer.py (resume is
exact) and tests/test_trainer_faults.py (what goes wrong is one line), two files so that CI's two
pytest workers share the subprocess trainings."""
import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

from conftest import REPO_ROOT

# The TensorFlow-free input path; `pack` first-fit packs (its position, the packer's state
# included, is saved with every checkpoint and restored on resume).
GRAIN = ("--gin.train_lib.train.loader='grain'",)
GRAIN_PACKED = GRAIN + ("--gin.train_lib.train.pack='first_fit'",)


def train_cmd(model_dir, data_dir, steps=6, extra=()):
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
# a test file's runs, saves each later one its compilation (~4 of ~18 s here). The Ctrl-C test
# interrupts compilation and runs without it.
XLA_CACHE = tempfile.mkdtemp(prefix="recjax-test-xla-cache-")
atexit.register(shutil.rmtree, XLA_CACHE, True)


def env(compilation_cache: bool = True):
    result = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu")
    result["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + result.get("PYTHONPATH", "")
    if compilation_cache:
        result.update(JAX_COMPILATION_CACHE_DIR=XLA_CACHE, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                      JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return result


def train(model_dir, data_dir, steps=6, extra=()):
    """A run to its end (raises if it fails): the reference the interrupted runs are held to."""
    subprocess.run(train_cmd(model_dir, data_dir, steps, extra), cwd=REPO_ROOT, env=env(), check=True, timeout=600)
    return model_dir


def losses(model_dir):
    with open(os.path.join(model_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return {r["step"]: r["loss"] for r in rows if r["split"] == "train"}


def root_copy(model_dir, name):
    copy = model_dir.parent / name
    shutil.copytree(model_dir, copy)
    return copy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
