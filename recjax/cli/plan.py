r"""`recjax plan`: per-device memory of a Gin config's train step on a mesh, without any device.

    recjax plan --gin_file=gin/experiments/beauty_xl_rec_aux.gin --mesh data=4,model=2 [--json]
    recjax plan --gin_file=gin/experiments/beauty_base_rec.gin --num_devices 8   # the Gin MESH_SHAPE
    recjax plan --gin_file=gin/models/t5_1_1_xl.gin --gin_file=gin/runs/finetune.gin \
        --gin.SHARDING_STRATEGY="'fsdp'" --mesh data=4,model=2 --batch_size 32

The train step of `recjax train` (the same `Trainer`, optimizer, loss, sharding rules and
microbatching) is lowered and compiled for abstract shapes on D*M fake CPU devices, and XLA's
memory analysis gives the bytes each device would hold: params, optimizer state, the step's
arguments / outputs and its temporaries (activations, gradients, collectives' buffers). Nothing
is allocated and no data is read: the set-up is `train_lib.train(setup_only=True)`'s
`TrainSetup` (the model, batch size, feature lengths, mesh strategy and microbatches Gin binds
for `train`), with the task set-up and the evaluator never evaluated.

The figures are the CPU compiler's. Params and optimizer state are exact (they follow from the
shardings). Temporaries are what XLA's CPU pipeline allocates: no rematerialization, bfloat16
matmuls carried out in float32, less buffer reuse than the TPU/GPU compilers, so read them as
an upper bound (FLAN-T5-XL, FSDP 4x2, batch 128 x 512/32: 156 GiB per device here, against
roughly 30 GiB of saved activations counted by hand). Compiling big models on the CPU is slow:
that XL plan takes about 14 CPU-minutes and 3.5 GiB of memory (base: about 3.5 CPU-minutes).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from typing import Optional

from recjax import gin_utils
from recjax.memory_plan import DEVICE_COUNT_FLAG, PlanError, format_table, make_plan, read_train_setup

DEFAULT_NUM_DEVICES = 8  # when a mesh size is -1 and nothing says how many devices there are
FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true")


# Fake devices (must be arranged before jax is imported).
# ----------------------------------------------------------------------------------------------

def forced_device_count() -> Optional[int]:
    """The host-platform device count XLA_FLAGS asks for, or None."""
    match = re.search(re.escape(DEVICE_COUNT_FLAG) + r"=(\d+)", os.environ.get("XLA_FLAGS", ""))
    return int(match.group(1)) if match else None


def prepare_fake_devices(num_devices: int) -> None:
    """Asks XLA for `num_devices` CPU devices (unless XLA_FLAGS already sets a count) and a quick
    compile, and keeps jax on the CPU.

    Acts only before jax is imported (the binary calls it first thing); in a process that already
    has jax (a test, a notebook) it changes nothing, and the mesh must fit the devices there.
    """
    if "jax" in sys.modules:
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if forced_device_count() is None:
        flags += f" {DEVICE_COUNT_FLAG}={num_devices}"
    # The plan never runs the program: skip LLVM's costly optimizations (buffer assignment, and so
    # the memory figures, happen before them and do not change).
    for flag in FAST_COMPILE_FLAGS:
        if flag.split("=")[0] not in flags:
            flags += f" {flag}"
    os.environ["XLA_FLAGS"] = flags.strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


def resolve_mesh(flag: str, num_devices: Optional[int]) -> tuple[int, int, int]:
    """'data=D,model=M' (one size may be -1) -> (data, model, total devices).

    Parsed here, before anything imports jax: the fake device count must be set first.
    """
    sizes = {}
    for part in flag.split(","):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in ("data", "model"):
            raise PlanError(f"--mesh {flag!r}: expected 'data=D,model=M' (one of them may be -1)")
        try:
            sizes[key.strip()] = int(value)
        except ValueError:
            raise PlanError(f"--mesh {flag!r}: {key}={value!r} is not an integer") from None
    data, model = sizes.get("data", -1), sizes.get("model", 1)
    if data == -1 and model == -1:
        raise PlanError(f"--mesh {flag!r}: at most one of data/model may be -1")
    if data == 0 or model == 0 or data < -1 or model < -1:
        raise PlanError(f"--mesh {flag!r}: sizes must be positive (or -1 for one of them)")
    if data > 0 and model > 0:
        if num_devices is not None and num_devices != data * model:
            raise PlanError(f"--mesh {flag!r} is {data * model} devices, not the --num_devices {num_devices}")
        return data, model, data * model
    total = num_devices or forced_device_count() or DEFAULT_NUM_DEVICES
    known = model if data == -1 else data
    if total % known:
        raise PlanError(f"--mesh {flag!r}: {'model' if data == -1 else 'data'}={known} does not divide the "
                        f"{total} devices")
    other = total // known
    return (other, model, total) if data == -1 else (data, other, total)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recjax plan", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mesh", default=None, help="data=D,model=M, one of them may be -1 (default: the Gin "
                   "MESH_SHAPE on --num_devices devices)")
    p.add_argument("--num_devices", type=int, default=None,
                   help="total devices when a mesh size is -1 (default: D*M, or 8)")
    p.add_argument("--batch_size", type=int, default=None, help="global batch size (default: the Gin BATCH_SIZE)")
    p.add_argument("--num_microbatches", type=int, default=None,
                   help="gradient-accumulation microbatches (default: the Gin NUM_MICROBATCHES)")
    p.add_argument("--sharding_strategy", default=None, help="data_parallel, fsdp or tensor_parallel "
                   "(default: the Gin SHARDING_STRATEGY)")
    p.add_argument("--json", action="store_true", help="print the plan as one JSON object instead of a table")
    return p


def main(argv: list[str]) -> int:
    try:
        files, bindings, search, rest = gin_utils.split_gin_flags(argv)
    except gin_utils.GinFlagError as e:
        print(f"recjax plan: error: {e}", file=sys.stderr)
        return 2
    parser = _parser()
    args = parser.parse_args(rest)
    if not files:
        parser.error("at least one --gin_file is required")
    try:
        if args.mesh is not None:
            data, model, total = resolve_mesh(args.mesh, args.num_devices)
        else:  # the Gin MESH_SHAPE, known only after parsing (which imports jax)
            data = model = None
            total = args.num_devices or forced_device_count() or DEFAULT_NUM_DEVICES
        prepare_fake_devices(total)  # before anything below imports jax

        import gin
        import recjax.train_lib  # noqa: F401  (registers the configurables the Gin files bind)

        gin.clear_config()  # a fresh config per call (main may run in-process, e.g. from tests)
        gin_utils.parse_gin(files, bindings, search)
        setup = read_train_setup()
        overrides = {k: v for k, v in (("batch_size", args.batch_size), ("num_microbatches", args.num_microbatches),
                                       ("sharding_strategy", args.sharding_strategy)) if v is not None}
        setup = dataclasses.replace(setup, **overrides)
        if data is None:
            data, model, _ = resolve_mesh(f"data={setup.mesh_shape[0]},model={setup.mesh_shape[1]}",
                                          args.num_devices)
        plan = make_plan(setup, data, model)
    except (ValueError, FileNotFoundError) as e:  # PlanError and GinFlagError are ValueErrors
        print(f"recjax plan: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    print(json.dumps(plan, sort_keys=True) if args.json else format_table(plan))
    return 0

