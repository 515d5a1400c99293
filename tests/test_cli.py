"""The `recjax` entry point: TensorFlow's start-up noise hidden unless --verbose, accelerators
hidden from TensorFlow."""
import os
import subprocess
import sys
import types

import pytest

from recjax import tf_import

NOISE = ("absl::InitializeLog", "oneDNN custom operations", "cuda drivers", "cuInit")


def _prepare(tmp_path, *flags):
    # `prepare` with its TFDS copy imports TensorFlow; TF_CPP_MIN_LOG_LEVEL as a user's shell has it
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "RECJAX_VERBOSE")}
    argv = [sys.executable, "-m", "recjax.cli", "prepare", *flags, "--format", "synthetic", "--num-users", "20",
            "--num-items", "30", "--out", str(tmp_path / f"out{len(flags)}")]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_tensorflow_start_up_lines_hidden_unless_verbose(tmp_path):
    quiet = _prepare(tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert not [line for line in quiet.stderr.splitlines() if any(n in line for n in NOISE)], quiet.stderr
    assert quiet.stdout.startswith("reading synthetic")  # the command's own output is untouched
    loud = _prepare(tmp_path, "--verbose")
    assert loud.returncode == 0, loud.stderr
    assert "absl::InitializeLog" in loud.stderr  # what the filter removes is really there


def test_noise_filter_keeps_everything_else():
    assert tf_import.is_noise("I0000 00:00:1796534707.895795   16833 port.cc:153] oneDNN custom operations are on.")
    assert tf_import.is_noise("E0000 00:00:1.0   1 cuda_platform.cc:52] failed call to cuInit: INTERNAL: ...")
    assert not tf_import.is_noise("E0000 00:00:1.0   1 some.cc:1] Out of memory while allocating")
    assert not tf_import.is_noise("Traceback (most recent call last):")
    assert not tf_import.is_noise("recjax prepare: error: x")


def test_accelerators_are_hidden_from_tensorflow():
    """What runs right after TF's import (and in the input pipeline): GPUs and TPUs made invisible."""
    calls = []
    visible = {"GPU": ["/physical_device:GPU:0"], "TPU": []}
    config = types.SimpleNamespace(get_visible_devices=lambda kind: visible[kind],
                                   set_visible_devices=lambda devices, kind: calls.append((devices, kind)))
    tf_import.hide_accelerators(types.SimpleNamespace(config=config))
    assert calls == [([], "GPU")]
    import tensorflow as tf

    import recjax.input_pipeline  # noqa: F401  (hides them at import)
    assert tf.config.get_visible_devices("GPU") == [] and tf.config.get_visible_devices("TPU") == []
