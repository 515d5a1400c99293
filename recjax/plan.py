r"""`recjax plan`: per-device memory of a Gin config's train step on a mesh, without any device.

    recjax plan --gin_file=gin/experiments/beauty_xl_rec_aux.gin --mesh data=4,model=2 [--json]
    recjax plan --gin_file=gin/experiments/beauty_base_rec.gin --num_devices 8   # the Gin MESH_SHAPE
    recjax plan --gin_file=gin/models/t5_1_1_xl.gin --gin_file=gin/runs/finetune.gin \
        --gin.SHARDING_STRATEGY="'fsdp'" --mesh data=4,model=2 --batch_size 32

The train step of `recjax train` (the same `Trainer`, optimizer, loss, sharding rules and
microbatching) is lowered and compiled for abstract shapes on D*M fake CPU devices, and XLA's
memory analysis gives the bytes each device would hold: params, optimizer state, the step's
arguments / outputs and its temporaries (activations, gradients, collectives' buffers). Nothing
is allocated and no data is read: the model, batch size, feature lengths, mesh strategy and
microbatches are read from the Gin-bound arguments of `train_lib.train`, and the task set-up
(`task_setup`) is never evaluated.

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
import inspect
import json
import os
import re
import sys
import time
from typing import Any, Mapping, Optional

from recjax import gin_utils

DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
DEFAULT_NUM_DEVICES = 8  # when a mesh size is -1 and nothing says how many devices there are
FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true")
GIB = 1024 ** 3


class PlanError(ValueError):
    """A configuration the plan cannot be made for; str(e) is one line."""


@dataclasses.dataclass(frozen=True)
class TrainSetup:
    """What the plan needs from the Gin-bound `train_lib.train` arguments."""

    model_config: Any  # recjax.config.T5Config
    loss_config: Any  # recjax.model.LossConfig
    optimizer: Any  # optax.GradientTransformation
    batch_size: int
    task_feature_lengths: dict[str, int]
    mesh_shape: tuple[int, int]
    sharding_strategy: str
    num_microbatches: int
    pack: bool
    seed: int


# ----------------------------------------------------------------------------------------------
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


def mesh_devices(data: int, model: int):
    """The first data*model CPU devices, or a PlanError that says how to get more."""
    import jax

    devices = jax.devices("cpu")
    if data <= 0 or model <= 0:
        raise PlanError(f"--mesh data={data},model={model}: sizes must be positive here")
    needed = data * model
    if needed > len(devices):
        raise PlanError(f"mesh data={data},model={model} needs {needed} devices but this process has "
                        f"{len(devices)} CPU devices (give the binary --num_devices {needed}, or where jax is "
                        f"already set up, XLA_FLAGS={DEVICE_COUNT_FLAG}={needed} before it starts)")
    return devices[:needed]


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


# ----------------------------------------------------------------------------------------------
# Reading the Gin-bound arguments of train_lib.train (without calling it).
# ----------------------------------------------------------------------------------------------

def _evaluate(value: Any) -> Any:
    """A bound value with its references (`%MACRO`, `@fn()`) evaluated, as Gin would on the call."""
    import gin

    if isinstance(value, gin.config.ConfigurableReference):
        # Gin evaluates the references inside a call's own arguments, so the result is final.
        return value.scoped_configurable_fn() if value.evaluate else value.scoped_configurable_fn
    if type(value) is dict:
        return {k: _evaluate(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_evaluate(v) for v in value)
    return value


def train_argument(name: str) -> Any:
    """The value `train_lib.train` would get for `name`: its Gin binding (evaluated) or its default."""
    import gin
    import recjax.train_lib as train_lib

    try:
        bound = gin.query_parameter(f"train_lib.train.{name}")
    except ValueError:
        wrapped = getattr(train_lib.train, "__wrapped__", train_lib.train)
        default = inspect.signature(wrapped).parameters[name].default
        if default is inspect.Parameter.empty or default is gin.REQUIRED:
            raise PlanError(f"train_lib.train.{name} is not bound by the Gin files (the plan needs it)") from None
        return default
    value = _evaluate(bound)
    if value is gin.REQUIRED:
        raise PlanError(f"train_lib.train.{name} is %gin.REQUIRED and not set (bind its macro with --gin.KEY=VALUE)")
    return value


def read_train_setup() -> TrainSetup:
    """The parts of the parsed Gin config that shape the train step (task_setup is not touched)."""
    from recjax.model import LossConfig
    from recjax.train_lib import _default_optimizer

    lengths = train_argument("task_feature_lengths")
    if not isinstance(lengths, Mapping) or not {"inputs", "targets"} <= set(lengths):
        raise PlanError(f"train_lib.train.task_feature_lengths must map 'inputs' and 'targets' to lengths, "
                        f"got {lengths!r}")
    mesh_shape = tuple(int(x) for x in train_argument("mesh_shape"))
    if len(mesh_shape) != 2:
        raise PlanError(f"train_lib.train.mesh_shape must be (data, model), got {mesh_shape!r}")
    optimizer = train_argument("optimizer")
    loss_config = train_argument("loss_config")
    return TrainSetup(
        model_config=train_argument("model_config"),
        loss_config=loss_config if loss_config is not None else LossConfig(),
        optimizer=optimizer if optimizer is not None else _default_optimizer(),
        batch_size=int(train_argument("batch_size")),
        task_feature_lengths={k: int(v) for k, v in lengths.items()},
        mesh_shape=mesh_shape,  # type: ignore[arg-type]
        sharding_strategy=str(train_argument("sharding_strategy")),
        num_microbatches=int(train_argument("num_microbatches")),
        pack=bool(train_argument("pack")),
        seed=int(train_argument("seed")),
    )


# ----------------------------------------------------------------------------------------------
# The plan.
# ----------------------------------------------------------------------------------------------

def batch_shapes(batch_size: int, lengths: Mapping[str, int], pack: bool) -> dict[str, tuple[int, int]]:
    """The features of SeqIO's EncDecFeatureConverter for one global batch."""
    enc, dec = (batch_size, lengths["inputs"]), (batch_size, lengths["targets"])
    shapes = {"encoder_input_tokens": enc, "decoder_input_tokens": dec,
              "decoder_target_tokens": dec, "decoder_loss_weights": dec}
    if pack:
        shapes.update(encoder_segment_ids=enc, encoder_positions=enc,
                      decoder_segment_ids=dec, decoder_positions=dec)
    return shapes


def check_batch(batch_size: int, data: int, num_microbatches: int) -> None:
    if batch_size <= 0:
        raise PlanError(f"batch size must be positive, got {batch_size}")
    if num_microbatches < 1:
        raise PlanError(f"num_microbatches must be >= 1, got {num_microbatches}")
    if batch_size % num_microbatches or (batch_size // num_microbatches) % data:
        raise PlanError(f"batch size {batch_size} must split into {num_microbatches} microbatch(es) each "
                        f"divisible by the mesh's data axis ({data})")


def make_plan(setup: TrainSetup, data: int, model: int) -> dict[str, Any]:
    """Compiles the train step for a data x model mesh on abstract shapes; per-device bytes and more."""
    from recjax import partitioning
    from recjax.model import EncoderDecoderModel
    from recjax.trainer import Trainer

    check_batch(setup.batch_size, data, setup.num_microbatches)
    mesh = partitioning.make_mesh(data, model, devices=mesh_devices(data, model))
    rules = partitioning.rules_for(setup.sharding_strategy)
    trainer = Trainer(EncoderDecoderModel(setup.model_config, setup.loss_config), setup.optimizer, mesh, rules,
                      num_microbatches=setup.num_microbatches, seed=setup.seed)
    shapes = batch_shapes(setup.batch_size, setup.task_feature_lengths, setup.pack)
    start = time.time()
    try:
        memory = trainer.memory_plan(shapes)
    except ValueError as e:  # e.g. a dimension the mesh axis does not divide
        raise PlanError(f"cannot shard the model on data={data},model={model} with "
                        f"{setup.sharding_strategy!r}: {str(e).splitlines()[0]}") from None
    compile_seconds = time.time() - start
    # What one device holds at the peak of the step: inputs and outputs (the donated state is
    # reused for the new state, so aliased bytes count once) plus the step's temporaries.
    peak = memory["argument_bytes"] + memory["output_bytes"] - memory["alias_bytes"] + memory["temp_bytes"]
    return {
        "mesh": {"data": data, "model": model, "devices": data * model},
        "sharding_strategy": setup.sharding_strategy,
        "batch_size": setup.batch_size,
        "num_microbatches": setup.num_microbatches,
        "task_feature_lengths": dict(setup.task_feature_lengths),
        "pack": setup.pack,
        "dtype": setup.model_config.dtype,
        "model_config": setup.model_config.to_dict(),
        "num_params": memory["num_params"],
        "per_device_bytes": {
            "params": memory["params_bytes"],
            "opt_state": memory["opt_state_bytes"],
            "arguments": memory["argument_bytes"],
            "outputs": memory["output_bytes"],
            "aliased": memory["alias_bytes"],
            "temporaries": memory["temp_bytes"],
            "peak": peak,
        },
        "compile_seconds": round(compile_seconds, 2),
    }


def _human(n: int) -> str:
    for unit, size in (("GiB", GIB), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:,.2f} {unit}"
    return f"{n} B"


def format_table(plan: Mapping[str, Any]) -> str:
    mesh, b = plan["mesh"], plan["per_device_bytes"]
    lengths = plan["task_feature_lengths"]
    lines = [
        f"mesh data={mesh['data']},model={mesh['model']} ({mesh['devices']} devices), "
        f"strategy {plan['sharding_strategy']}, {plan['num_params']:,} params, activations {plan['dtype']}",
        f"batch {plan['batch_size']} x (inputs {lengths['inputs']}, targets {lengths['targets']})"
        f"{', packed' if plan['pack'] else ''}, {plan['num_microbatches']} microbatch(es); "
        f"compiled in {plan['compile_seconds']:.1f} s",
        "",
    ]
    rows = [("params", b["params"], "the device's shard of the float32 params"),
            ("optimizer state", b["opt_state"], "its shard of the optimizer state"),
            ("step arguments", b["arguments"], "state + batch shard passed to the step"),
            ("step outputs", b["outputs"], "new state + metrics"),
            ("  aliased (donated)", b["aliased"], "outputs written in place of the arguments"),
            ("temporaries", b["temporaries"], "activations, gradients, collective buffers"),
            ("peak estimate", b["peak"], "arguments + outputs - aliased + temporaries")]
    width = max(len(r[0]) for r in rows)
    lines.append(f"{'per device'.ljust(width)}  {'bytes':>15}  {'':>12}")
    for name, value, note in rows:
        lines.append(f"{name.ljust(width)}  {value:>15,}  {_human(value):>12}  {note}")
    return "\n".join(lines)


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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
