"""Optimizers and learning-rate schedules, selectable from Gin.

`adafactor` defaults are T5X's fine-tuning ones: decay rate 0.8, update clipping 1.0,
parameter-scaled updates, no momentum, constant learning rate 1e-3.
"""
from __future__ import annotations

from typing import Callable, Optional

import gin
import jax.numpy as jnp
import optax

Schedule = Callable[[jnp.ndarray], jnp.ndarray]


@gin.configurable
def constant_schedule(value: float = 1e-3) -> Schedule:
    return optax.constant_schedule(value)


@gin.configurable
def rsqrt_schedule(base: float = 1.0, warmup_steps: int = 10_000) -> Schedule:
    """T5's pre-training schedule: base / sqrt(max(step, warmup))."""
    def schedule(step):
        return base / jnp.sqrt(jnp.maximum(jnp.asarray(step, jnp.float32), float(warmup_steps)))
    return schedule


@gin.configurable
def warmup_cosine_schedule(peak: float = 1e-3, warmup_steps: int = 1000, decay_steps: int = 100_000,
                           end_value: float = 0.0) -> Schedule:
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup_steps, max(decay_steps, warmup_steps + 1), end_value)


@gin.configurable
def adafactor(learning_rate: Optional[Schedule] = None, decay_rate: float = 0.8,
              clipping_threshold: Optional[float] = 1.0, multiply_by_parameter_scale: bool = True,
              momentum: Optional[float] = None, min_dim_size_to_factor: int = 128,
              weight_decay_rate: Optional[float] = None,
              global_norm_clip: Optional[float] = None) -> optax.GradientTransformation:
    learning_rate = learning_rate if learning_rate is not None else constant_schedule()
    tx = optax.adafactor(learning_rate=learning_rate, decay_rate=decay_rate, clipping_threshold=clipping_threshold,
                         multiply_by_parameter_scale=multiply_by_parameter_scale, momentum=momentum,
                         min_dim_size_to_factor=min_dim_size_to_factor, weight_decay_rate=weight_decay_rate)
    return optax.chain(optax.clip_by_global_norm(global_norm_clip), tx) if global_norm_clip else tx


@gin.configurable
def adamw(learning_rate: Optional[Schedule] = None, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          weight_decay: float = 0.01, global_norm_clip: Optional[float] = 1.0) -> optax.GradientTransformation:
    learning_rate = learning_rate if learning_rate is not None else constant_schedule(1e-4)
    tx = optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
    return optax.chain(optax.clip_by_global_norm(global_norm_clip), tx) if global_norm_clip else tx
