"""Per-device memory of a train step on a mesh without the devices (what `recjax plan` runs):
the train step of `recjax train` (its Trainer, optimizer, loss, sharding rules, microbatching)
compiled for abstract shapes on fake CPU devices, and XLA's memory analysis of it. The fake
devices must exist before jax is imported: `recjax plan` arranges them (recjax/cli/plan.py)."""
from __future__ import annotations

import time
from typing import Any, Mapping

from recjax import gin_utils

GIB = 1024 ** 3
DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"  # XLA_FLAGS: fake CPU devices


class PlanError(ValueError):
    """A configuration the plan cannot be made for; str(e) is one line."""


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


# ----------------------------------------------------------------------------------------------
# The train step's set-up, from train_lib.train's Gin-bound arguments.
# ----------------------------------------------------------------------------------------------

def read_train_setup():
    """`train_lib.train(setup_only=True)`: its TrainSetup from the parsed Gin config, with the
    task set-up and the evaluator unbound (the plan reads no data and evaluates nothing)."""
    import gin
    import recjax.train_lib as train_lib

    unbound = ("train_lib.train.task_setup", "train_lib.train.evaluator")
    kept = {}
    for key in unbound:
        try:
            kept[key] = gin.query_parameter(key)
        except ValueError:
            pass
        gin.bind_parameter(key, None)
    try:
        return train_lib.train(setup_only=True, model_dir="", mixture_or_task_name="", train_steps=1)
    except RuntimeError as e:  # Gin: "Required bindings for `train` not provided in config: [...]"
        raise PlanError(gin_utils.first_line(e)) from None
    finally:  # the parsed config as it was
        for key, value in kept.items():
            gin.bind_parameter(key, value)


# ----------------------------------------------------------------------------------------------
# The plan.
# ----------------------------------------------------------------------------------------------

def make_plan(setup, data: int, model: int) -> dict[str, Any]:
    """Compiles the train step of a `train_lib.TrainSetup` for a data x model mesh on abstract
    shapes; per-device bytes and more."""
    devices = mesh_devices(data, model)
    try:
        # `train`'s own partitioner and Trainer, batch and microbatch checks
        trainer = setup.make_trainer(setup.partitioner(devices, mesh_shape=(data, model)))
    except ValueError as e:
        raise PlanError(str(e).splitlines()[0]) from None
    shapes = setup.batch_shapes()
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
