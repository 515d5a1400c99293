"""`recjax plan`: per-device bytes of a Gin config's train step on fake CPU devices."""
import json
import os
import subprocess
import sys

import gin
import numpy as np
import pytest

from recjax import param_tree
from recjax.cli import plan
from recjax.config import T5Config

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tiny model (emb 64, 4 heads x 16, mlp 128, 2+2 layers) with a 512-id vocabulary: every
# sharded dimension divides a 4 x 2 mesh.
TINY_CONFIG = T5Config(vocab_size=512, emb_dim=64, num_heads=4, head_dim=16, num_encoder_layers=2,
                       num_decoder_layers=2, mlp_dim=128)
TINY = ["--gin_file=gin/models/t5_1_1_tiny.gin", "--gin_file=gin/runs/finetune.gin", "--gin.VOCAB_SIZE=512",
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 32, 'targets': 8}"]


@pytest.fixture(autouse=True)
def _clear_gin():
    yield
    gin.clear_config()  # plan.main leaves its config parsed; other tests start clean


def fsdp_param_bytes(config: T5Config, data: int, model: int) -> int:
    """Per-device float32 param bytes under FSDP, worked out by hand: matrices are split over both
    axes (embed over data, vocab/mlp/heads over model), RMSNorm scales over data only, the
    relative-position tables [heads, buckets] over model only."""
    total = 0
    for path, shape in param_tree.expected_param_shapes(config).items():
        size = int(np.prod(shape))
        if len(shape) == 2 and "relpos" not in path:
            total += size // (data * model)
        elif "relpos" in path:
            total += size // model
        else:
            total += size // data
    return 4 * total


def _main(argv, capsys):
    capsys.readouterr()
    rc = plan.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.slow
def test_fsdp_4x2_from_the_binary():
    """A fresh process without XLA_FLAGS: the binary makes its 8 CPU devices itself."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    proc = subprocess.run([sys.executable, "-m", "recjax.cli", "plan", *TINY, "--gin.SHARDING_STRATEGY='fsdp'",
                           "--mesh", "data=4,model=2", "--batch_size", "16", "--json"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    num_params = sum(int(np.prod(s)) for s in param_tree.expected_param_shapes(TINY_CONFIG).values())
    assert result["num_params"] == num_params
    assert result["mesh"] == {"data": 4, "model": 2, "devices": 8}
    b = result["per_device_bytes"]
    assert b["params"] == fsdp_param_bytes(TINY_CONFIG, 4, 2)
    matrices = sum(int(np.prod(s)) for p, s in param_tree.expected_param_shapes(TINY_CONFIG).items()
                   if len(s) == 2 and "relpos" not in p)
    assert 4 * matrices // 8 < b["params"] < 4 * num_params // 8 + 4096  # ~ total / 8
    # No dimension here reaches Adafactor's factoring threshold (128 on both sides), so each
    # second moment has its param's shape and sharding; the rest are scalars and placeholders.
    assert 0 <= b["opt_state"] - b["params"] < 4096
    # The donated state comes back in place; the step's inputs hold the state and a batch shard.
    assert b["arguments"] >= b["params"] + b["opt_state"]
    assert b["aliased"] >= b["params"] + b["opt_state"] - 4096  # all but a few placeholder scalars
    assert b["temporaries"] > 0
    assert b["peak"] == b["arguments"] + b["outputs"] - b["aliased"] + b["temporaries"]


@pytest.mark.slow
def test_data_parallel_replicates_params_and_prints_a_table(capsys):
    rc, out, err = _main([*TINY, "--mesh", "data=2,model=1", "--batch_size", "8"], capsys)
    assert rc == 0, err
    num_params = sum(int(np.prod(s)) for s in param_tree.expected_param_shapes(TINY_CONFIG).values())
    assert f"{num_params:,} params" in out
    assert "strategy data_parallel" in out
    params_line = next(line for line in out.splitlines() if line.startswith("params "))
    assert f"{4 * num_params:,}" in params_line  # replicated: every device holds all of it
    for row in ("optimizer state", "temporaries", "peak estimate"):
        assert row in out


@pytest.mark.parametrize("argv, message", [
    (["--mesh", "data=3,model=-1"], "data=3 does not divide the 8 devices"),
    (["--mesh", "data=4,model=4"], "mesh data=4,model=4 needs 16 devices but this process has 8"),
    # the train step's own checks (TrainSetup.make_trainer): the same words as `recjax train`
    (["--mesh", "data=4,model=1", "--batch_size", "6"], "batch size 6 is not divisible by the mesh's data axis (4)"),
    (["--mesh", "data=2,model=1", "--batch_size", "8", "--num_microbatches", "3"],
     "batch size 8 must split into 3 microbatches that are each divisible by the data axis (2)"),
    (["--mesh", "data=4,model=2", "--gin.SHARDING_STRATEGY='fsdp'", "--gin.T5Config.num_heads=3"],
     "cannot shard the model on data=4,model=2 with 'fsdp'"),
    (["--mesh", "data=2,model=1", "--gin.SHARDING_STRATEGY='zero'"], "unknown sharding strategy 'zero'"),
    (["--mesh", "rows=2"], "expected 'data=D,model=M'"),
])
def test_bad_mesh_or_batch_is_a_one_line_error(argv, message, capsys):
    rc, out, err = _main([*TINY, *argv], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err


def test_missing_gin_file(capsys):
    rc, _, err = _main(["--gin_file=gin/models/nope.gin", "--mesh", "data=1,model=1"], capsys)
    assert rc == 2 and "gin file 'gin/models/nope.gin' not found" in err
