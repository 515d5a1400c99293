"""A trained model onto the mesh: the one restore path of `eval`, `infer`, `score` and `export`'s
readers (T5X's `restore_from_checkpoint` for serving).

    with checkpoints.Checkpoint(path) as ckpt:
        model, params, step = restore_model(ckpt, partitioner)

The checkpoint is resolved once (a `recjax.checkpoints.Checkpoint`: one orbax manager); the
params are read straight into the partitioner's shardings for the model's logical axes.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

from recjax.checkpoints import Checkpoint
from recjax.model import EncoderDecoderModel
from recjax.partitioning import Partitioner


class RestoredModel(NamedTuple):
    model: EncoderDecoderModel
    params: dict
    step: int


def restore_model(checkpoint: Checkpoint, partitioner: Partitioner, step: Optional[int] = None, *,
                  dtype: Optional[str] = None) -> RestoredModel:
    """The checkpoint's model (activation dtype `dtype` when given) and its params of `step`
    (default: the newest) laid out on the partitioner's mesh."""
    config = checkpoint.config if dtype is None else checkpoint.config.replace(dtype=dtype)
    model = EncoderDecoderModel(config)
    params, step = checkpoint.restore_params(step, shardings=partitioner.param_shardings(model.abstract_params()))
    return RestoredModel(model, params, step)
