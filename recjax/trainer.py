"""The partitioned train step: jit with named shardings, donated state, microbatch accumulation.

State layout follows the mesh rules (`recjax.partitioning`): params and optimizer state take the
shardings their logical axes give, the batch is split over `data`. Gradient accumulation is
exact: the loss normalizer is computed on the whole batch first, each microbatch contributes
its weighted loss sum, so M microbatches give the gradient of one big batch.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from recjax.model import EncoderDecoderModel
from recjax.partitioning import Partitioner

Batch = Mapping[str, jax.Array]


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar
    params: Any
    opt_state: Any


class Trainer:
    """Builds the sharded state and the compiled train / eval steps for one model and partitioner
    (its mesh, rules and shardings)."""

    def __init__(self, model: EncoderDecoderModel, optimizer: optax.GradientTransformation,
                 partitioner: Partitioner, *, num_microbatches: int = 1, seed: int = 0):
        if num_microbatches < 1:
            raise ValueError(f"num_microbatches must be >= 1, got {num_microbatches}")
        self.model, self.optimizer, self.partitioner = model, optimizer, partitioner
        self.mesh = partitioner.mesh
        self.num_microbatches = num_microbatches
        self.dropout_rng = jax.random.PRNGKey(seed + 1)
        self._init_rng = jax.random.PRNGKey(seed)

        boxed = model.abstract_params()
        self.param_shardings = partitioner.param_shardings(boxed)
        self.abstract_params = nn.meta.unbox(boxed)
        abstract_opt = jax.eval_shape(optimizer.init, self.abstract_params)
        opt_shardings = partitioner.optimizer_state_shardings(optimizer, abstract_opt, self.param_shardings,
                                                              self.abstract_params)
        self.state_shardings = TrainState(step=partitioner.replicated, params=self.param_shardings,
                                          opt_state=opt_shardings)
        self.abstract_state = TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=self.abstract_params,
                                         opt_state=abstract_opt)
        self.batch_sharding = partitioner.batch_sharding
        self._train_step = None
        self._eval_step = None

    # ------------------------------------------------------------------ state
    def init_state(self, params: Optional[Any] = None) -> TrainState:
        """Fresh state (random params, or `params` e.g. from a pretrained checkpoint)."""
        def init(rng, given):
            p = nn.meta.unbox(self.model.init_params(rng)) if given is None else given
            return TrainState(step=jnp.zeros((), jnp.int32), params=p, opt_state=self.optimizer.init(p))

        with jax.set_mesh(self.mesh):
            if params is None:
                return jax.jit(lambda rng: init(rng, None), out_shardings=self.state_shardings)(self._init_rng)
            params = jax.device_put(params, self.param_shardings)
            return jax.jit(lambda p: init(None, p), out_shardings=self.state_shardings)(params)

    def state_from_arrays(self, step: int, params: Any, opt_state: Any) -> TrainState:
        return TrainState(step=jax.device_put(jnp.asarray(step, jnp.int32), self.state_shardings.step),
                          params=params, opt_state=opt_state)

    # ------------------------------------------------------------------ steps
    def _grads(self, params, batch: Batch, rng) -> tuple[Any, Any, dict]:
        """Gradient of the whole batch's normalized loss, accumulated over microbatches."""
        batch, divisor = self.model.normalize(batch)
        use_dropout = self.model.config.dropout_rate > 0

        def loss_of(p, mb, mb_rng):
            loss_sum, sums = self.model.loss_sums(p, mb, mb_rng if use_dropout else None)
            return loss_sum / divisor, sums

        grad_fn = jax.value_and_grad(loss_of, has_aux=True)
        m = self.num_microbatches
        if m == 1:
            (loss, sums), grads = grad_fn(params, batch, rng)
            return loss, grads, sums

        def split(x):  # [B, ...] -> [M, B/M, ...], each microbatch strided across all data shards
            x = x.reshape((x.shape[0] // m, m) + x.shape[1:]).swapaxes(0, 1)
            return jax.lax.with_sharding_constraint(x, self.partitioner.microbatch_sharding())

        micro = jax.tree.map(split, batch)

        def body(carry, inputs):
            loss_acc, grad_acc, sums_acc = carry
            index, mb = inputs
            (loss, sums), grads = grad_fn(params, mb, jax.random.fold_in(rng, index))
            return (loss_acc + loss, jax.tree.map(jnp.add, grad_acc, grads),
                    jax.tree.map(jnp.add, sums_acc, sums)), None

        zeros_sums = {"z_loss": jnp.zeros((), jnp.float32), "correct_tokens": jnp.zeros((), jnp.int32),
                      "target_tokens": jnp.zeros((), jnp.int32)}
        init = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params), zeros_sums)
        (loss, grads, sums), _ = jax.lax.scan(body, init, (jnp.arange(m), micro))
        return loss, grads, sums

    def _step(self, state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        rng = jax.random.fold_in(self.dropout_rng, state.step)
        loss, grads, sums = self._grads(state.params, batch, rng)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "loss": loss,
            "accuracy": sums["correct_tokens"] / jnp.maximum(sums["target_tokens"], 1),
            "target_tokens": sums["target_tokens"],
            "grad_norm": optax.global_norm(grads),
            "param_norm": optax.global_norm(params),
        }
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    def check_batch_size(self, size: int) -> None:
        """The global batch splits over the data axis and into the microbatches (checked before any
        input pipeline starts, and on the first batch)."""
        self.partitioner.check_batch(size)
        if size % self.num_microbatches or (size // self.num_microbatches) % self.mesh.shape["data"]:
            raise ValueError(f"batch size {size} must split into {self.num_microbatches} microbatches that are "
                             f"each divisible by the data axis ({self.mesh.shape['data']})")

    def _check_batch(self, batch: Batch) -> None:
        self.check_batch_size(next(iter(batch.values())).shape[0])

    def train_step(self, state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        """One optimizer step; `state` is donated. Output shardings are pinned so reuse never recompiles."""
        if self._train_step is None:
            self._check_batch(batch)
            self._train_step = jax.jit(
                self._step, in_shardings=(self.state_shardings, self.batch_sharding),
                out_shardings=(self.state_shardings, None), donate_argnums=(0,))
        with jax.set_mesh(self.mesh):
            return self._train_step(state, batch)

    def eval_step(self, params: Any, batch: Batch) -> dict:
        """Summed loss / accuracy terms of one batch (no dropout); the caller averages."""
        if self._eval_step is None:
            def step(p, b):
                b, _ = self.model.normalize(b, "num_real_target_tokens")  # per real target token
                loss_sum, sums = self.model.loss_sums(p, b)
                return dict(sums, loss_sum=loss_sum)
            self._eval_step = jax.jit(step, in_shardings=(self.param_shardings, self.batch_sharding))
        with jax.set_mesh(self.mesh):
            return self._eval_step(params, batch)

    def shard_batch(self, local_batch: Mapping[str, np.ndarray]) -> dict:
        """Host numpy batch (this process's rows) -> global arrays split over `data`."""
        return dict(self.partitioner.shard_local_batch(dict(local_batch)))

    # ------------------------------------------------------------------ planning
    def memory_plan(self, batch_shapes: Mapping[str, tuple[int, ...]]) -> dict:
        """Compile the train step on abstract shapes (nothing allocated); XLA's per-device bytes."""
        abstract_batch = {k: jax.ShapeDtypeStruct(s, jnp.int32, sharding=self.batch_sharding)
                          for k, s in batch_shapes.items()}
        abstract_state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                      self.abstract_state, self.state_shardings)
        step = jax.jit(self._step, in_shardings=(self.state_shardings, self.batch_sharding),
                       out_shardings=(self.state_shardings, None), donate_argnums=(0,))
        with jax.set_mesh(self.mesh):
            compiled = step.lower(abstract_state, abstract_batch).compile()
        analysis = compiled.memory_analysis()

        def per_device_bytes(tree, shardings) -> int:
            total = 0
            for a, s in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)):
                shard_shape = s.shard_shape(a.shape)
                total += int(np.prod(shard_shape)) * jnp.dtype(a.dtype).itemsize
            return total

        return {
            "params_bytes": per_device_bytes(self.abstract_params, self.param_shardings),
            "opt_state_bytes": per_device_bytes(self.abstract_state.opt_state, self.state_shardings.opt_state),
            "argument_bytes": int(getattr(analysis, "argument_size_in_bytes", 0)),
            "output_bytes": int(getattr(analysis, "output_size_in_bytes", 0)),
            "temp_bytes": int(getattr(analysis, "temp_size_in_bytes", 0)),
            "alias_bytes": int(getattr(analysis, "alias_size_in_bytes", 0)),
            "num_params": int(sum(np.prod(a.shape) for a in jax.tree.leaves(self.abstract_params))),
        }
