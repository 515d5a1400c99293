"""The `(data, model)` device mesh and the logical-axis rules of each sharding strategy.

Params and activations carry logical axis names (`embed`, `mlp`, `heads`, `joined_kv`, `kv`,
`vocab`, `batch`, `length`, `relpos_buckets`); one rules table per strategy maps them onto the
mesh axes. Rules are tried in order and a mesh axis is used at most once per tensor, so in FSDP
an activation's `batch` takes `data` first and its `embed` stays whole, while a param's `embed`
(no `batch` axis) is sharded over `data`.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import flax.linen as nn
import gin
import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

Rules = tuple[tuple[str, Optional[str]], ...]

# Data parallel: params and optimizer state replicated, the batch split over `data`.
DATA_PARALLEL_RULES: Rules = (
    ("batch", "data"),
)

# FSDP (ZeRO-3 style): also shard every param (and so its optimizer state) over `data`.
FSDP_RULES: Rules = (
    ("batch", "data"),
    ("embed", "data"),
    ("vocab", "model"),
    ("mlp", "model"),
    ("heads", "model"),
    ("joined_kv", "model"),
)

# Tensor parallel (Megatron style, T5X's standard rules): heads and mlp over `model`.
TENSOR_PARALLEL_RULES: Rules = (
    ("batch", "data"),
    ("vocab", "model"),
    ("mlp", "model"),
    ("heads", "model"),
    ("joined_kv", "model"),
)

STRATEGIES: dict[str, Rules] = {
    "data_parallel": DATA_PARALLEL_RULES,
    "fsdp": FSDP_RULES,
    "tensor_parallel": TENSOR_PARALLEL_RULES,
}


def rules_for(strategy: str) -> Rules:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown sharding strategy {strategy!r}; expected one of {sorted(STRATEGIES)}")
    return STRATEGIES[strategy]


@gin.configurable
def make_mesh(data: int = -1, model: int = 1, devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
    """A 2-D mesh with axes ('data', 'model'); one size may be -1."""
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    if data == -1 and model == -1:
        raise ValueError("mesh: at most one of data/model may be -1")
    if data == -1:
        if model <= 0 or n % model:
            raise ValueError(f"mesh: model={model} does not divide the {n} devices")
        data = n // model
    elif model == -1:
        if data <= 0 or n % data:
            raise ValueError(f"mesh: data={data} does not divide the {n} devices")
        model = n // data
    if data * model != n:
        raise ValueError(f"mesh: data={data} x model={model} = {data * model} but there are {n} devices")
    return Mesh(np.asarray(devices).reshape(data, model), ("data", "model"))


def logical_shardings(boxed_tree: Any, mesh: Mesh, rules: Rules) -> Any:
    """NamedShardings for a tree of `nn.LogicallyPartitioned` leaves (e.g. abstract init output)."""
    specs = nn.get_partition_spec(boxed_tree)
    return nn.logical_to_mesh_sharding(specs, mesh, list(rules))


def optimizer_state_shardings(optimizer: optax.GradientTransformation, abstract_state: Any,
                              param_shardings: Any, abstract_params: Any, mesh: Mesh) -> Any:
    """Shardings of the optimizer state, following the param each state leaf belongs to.

    A leaf shaped like its param takes the param's spec; Adafactor's factored second moments
    (`v_row` = shape[:-1], `v_col` = shape[:-2] + shape[-1:]) take the matching part of it;
    anything else (counters, placeholder scalars) is replicated.
    """
    replicated = NamedSharding(mesh, P())

    def for_leaf(leaf, sharding: NamedSharding, param) -> NamedSharding:
        shape, pshape = tuple(leaf.shape), tuple(param.shape)
        spec = tuple(sharding.spec) + (None,) * (len(pshape) - len(sharding.spec))
        if shape == pshape:
            return sharding
        if len(pshape) >= 2 and shape == pshape[:-1]:
            return NamedSharding(mesh, P(*spec[:-1]))
        if len(pshape) >= 2 and shape == pshape[:-2] + pshape[-1:]:
            return NamedSharding(mesh, P(*(spec[:-2] + spec[-1:])))
        return replicated

    return optax.tree_map_params(optimizer, for_leaf, abstract_state, param_shardings, abstract_params,
                                 transform_non_params=lambda _: replicated)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Examples split over `data`, replicated over `model`."""
    return NamedSharding(mesh, P("data"))


def check_batch_divisible(batch_size: int, mesh: Mesh, what: str = "batch size") -> None:
    data = mesh.shape["data"]
    if batch_size % data:
        raise ValueError(f"{what} {batch_size} is not divisible by the mesh's data axis ({data})")


class Partitioner:
    """Where every array of a command lives (T5X's `PjitPartitioner`): the mesh, the logical-axis
    rules of a sharding strategy, the shardings of params, optimizer state and batches, placing
    host arrays on the mesh and bringing results back. The trainer, evaluation, `infer`, `score`,
    `plan` and the baselines all place arrays through one.

        partitioner = Partitioner.create((-1, 1), "fsdp")
        shardings = partitioner.param_shardings(model.abstract_params())
        batch = partitioner.shard_batch(host_batch)  # rows over `data`
    """

    def __init__(self, mesh: Mesh, strategy: str = "data_parallel"):
        self.mesh, self.strategy = mesh, strategy
        self.rules = rules_for(strategy)
        self.batch_sharding = batch_sharding(mesh)
        self.replicated = NamedSharding(mesh, P())

    @classmethod
    def create(cls, mesh_shape: Sequence[int] = (-1, 1), strategy: str = "data_parallel",
               devices: Optional[Sequence[jax.Device]] = None) -> "Partitioner":
        """A (data, model) mesh of `mesh_shape` (one size may be -1) over `devices` (default: all)."""
        rules_for(strategy)  # an unknown strategy is refused before the mesh is built
        return cls(make_mesh(*mesh_shape, devices=devices), strategy)

    @property
    def data_size(self) -> int:
        return self.mesh.shape["data"]

    # ------------------------------------------------------------------ shardings
    def param_shardings(self, boxed_params: Any) -> Any:
        """NamedShardings of params given as `nn.LogicallyPartitioned` boxes (e.g.
        `EncoderDecoderModel.abstract_params()`), unboxed to the params' own tree."""
        return nn.meta.unbox(logical_shardings(boxed_params, self.mesh, self.rules))

    def optimizer_state_shardings(self, optimizer: optax.GradientTransformation, abstract_state: Any,
                                  param_shardings: Any, abstract_params: Any) -> Any:
        return optimizer_state_shardings(optimizer, abstract_state, param_shardings, abstract_params, self.mesh)

    def microbatch_sharding(self) -> NamedSharding:
        """Microbatches stacked [M, B/M, ...]: each microbatch's rows over `data`."""
        return NamedSharding(self.mesh, P(None, "data"))

    def check_batch(self, batch_size: int, what: str = "batch size") -> None:
        check_batch_divisible(batch_size, self.mesh, what)

    def round_batch(self, batch_size: int) -> int:
        """The smallest multiple of the data axis >= batch_size (rows a padded batch needs)."""
        return -(-batch_size // self.data_size) * self.data_size

    # ------------------------------------------------------------------ placement
    def shard_batch(self, array: np.ndarray) -> jax.Array:
        """A global host array (every process holds all rows) -> rows split over `data`."""
        return jax.make_array_from_callback(array.shape, self.batch_sharding, lambda index: array[index])

    def place_batch(self, batch: Any) -> Any:
        """A tree of host arrays on one host: rows over `data` where they divide evenly, else
        replicated (the baselines' ragged last batches)."""
        return jax.tree_util.tree_map(
            lambda v: jax.device_put(v, self.batch_sharding if np.ndim(v) and np.shape(v)[0] % self.data_size == 0
                                     else self.replicated), batch)

    def shard_local_batch(self, local_batch: Any) -> Any:
        """A tree of this process's rows -> global arrays split over `data` (multi-host training)."""
        return jax.tree_util.tree_map(
            lambda v: jax.make_array_from_process_local_data(self.batch_sharding, np.asarray(v)), local_batch)

    def replicate(self, tree: Any) -> Any:
        return jax.tree_util.tree_map(
            lambda a: jax.make_array_from_callback(np.shape(a), self.replicated, lambda index: np.asarray(a)[index]),
            tree)

    def place_params(self, params: Any, shardings: Any = None) -> Any:
        """Params on the mesh: arrays already sharded (a trainer's) are kept as they are; host
        arrays go to `shardings` when given, else replicated."""
        leaves = jax.tree_util.tree_leaves(params)
        if all(isinstance(x, jax.Array) and not isinstance(x.sharding, jax.sharding.SingleDeviceSharding)
               for x in leaves):
            return params
        if shardings is not None:
            return jax.device_put(params, shardings)
        return self.replicate(jax.tree_util.tree_map(np.asarray, params))

    def fetch(self, tree: Any) -> Any:
        """Device results -> numpy on every process (gathered across hosts)."""
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            return multihost_utils.process_allgather(tree, tiled=True)
        return jax.tree_util.tree_map(np.asarray, tree)
