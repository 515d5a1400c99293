"""The parameter tree a T5 config implies (T5X's T5 v1.1 names), independent of the network
module and of any checkpoint format: what `recjax.checkpoints` checks a restore against, what
`recjax.hf_mapping` maps to and from transformers' names, and what `recjax plan` counts."""
from __future__ import annotations

import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from recjax.config import T5Config

Shape = tuple[int, ...]
VOCAB_PARAMS = {"token_embedder/embedding": 0, "decoder/logits_dense/kernel": 1}  # param -> its vocab axis


class CheckpointError(ValueError):
    """A checkpoint is missing, malformed or does not match its config; str(e) is one line."""


def mlp_input_names(config: T5Config) -> list[str]:
    """T5X's `MlpBlock` names: `wi` for one activation, `wi_0`, `wi_1`, ... for a gated MLP."""
    if len(config.mlp_activations) == 1:
        return ["wi"]
    return [f"wi_{i}" for i in range(len(config.mlp_activations))]


def expected_param_shapes(config: T5Config) -> dict[str, Shape]:
    """'/'-joined param path -> shape, for every param the network of `config` has."""
    embed, vocab, mlp = config.emb_dim, config.vocab_size, config.mlp_dim
    joined = config.num_heads * config.head_dim  # heads * head_dim, which need not equal embed
    shapes: dict[str, Shape] = {"token_embedder/embedding": (vocab, embed)}

    def attention(prefix: str) -> None:
        for name in ("query", "key", "value"):
            shapes[f"{prefix}/{name}/kernel"] = (embed, joined)
        shapes[f"{prefix}/out/kernel"] = (joined, embed)

    def mlp_block(prefix: str) -> None:
        for name in mlp_input_names(config):
            shapes[f"{prefix}/{name}/kernel"] = (embed, mlp)
        shapes[f"{prefix}/wo/kernel"] = (mlp, embed)

    relpos = (config.num_heads, config.relative_attention_num_buckets)
    shapes["encoder/relpos_bias/rel_embedding"] = relpos
    for i in range(config.num_encoder_layers):
        layer = f"encoder/layers_{i}"
        shapes[f"{layer}/pre_attention_layer_norm/scale"] = (embed,)
        attention(f"{layer}/attention")
        shapes[f"{layer}/pre_mlp_layer_norm/scale"] = (embed,)
        mlp_block(f"{layer}/mlp")
    shapes["encoder/encoder_norm/scale"] = (embed,)

    shapes["decoder/relpos_bias/rel_embedding"] = relpos
    for i in range(config.num_decoder_layers):
        layer = f"decoder/layers_{i}"
        shapes[f"{layer}/pre_self_attention_layer_norm/scale"] = (embed,)
        attention(f"{layer}/self_attention")
        shapes[f"{layer}/pre_cross_attention_layer_norm/scale"] = (embed,)
        attention(f"{layer}/encoder_decoder_attention")
        shapes[f"{layer}/pre_mlp_layer_norm/scale"] = (embed,)
        mlp_block(f"{layer}/mlp")
    shapes["decoder/decoder_norm/scale"] = (embed,)
    if not config.logits_via_embedding:
        shapes["decoder/logits_dense/kernel"] = (embed, vocab)
    return shapes


def flatten_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Nested param dict -> {'encoder/layers_0/...': leaf}."""
    return traverse_util.flatten_dict(dict(params), sep="/")


def unflatten_params(flat: Mapping[str, Any]) -> dict[str, Any]:
    return traverse_util.unflatten_dict(dict(flat), sep="/")


def _layer_sort_key(path: str) -> list:
    # layers_10 after layers_9 in messages.
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def validate_param_shapes(shapes: Mapping[str, Shape], config: T5Config, source: str) -> None:
    """Raises CheckpointError naming the first missing, unexpected or mis-shaped param."""
    expected = expected_param_shapes(config)
    missing = [key for key in expected if key not in shapes]  # in network order
    if missing:
        more = f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""
        raise CheckpointError(
            f"{source}: missing param {missing[0]!r} (expected shape {list(expected[missing[0]])}){more}")
    unexpected = sorted(set(shapes) - set(expected), key=_layer_sort_key)
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(f"{source}: unexpected param {unexpected[0]!r} with shape "
                              f"{list(shapes[unexpected[0]])}, not in the network of its config{more}")
    for key in expected:
        if tuple(shapes[key]) != expected[key]:
            raise CheckpointError(f"{source}: param {key!r} has shape {list(shapes[key])}, "
                                  f"expected {list(expected[key])}")


def validate_dtypes(dtypes: Mapping[str, Any], source: str) -> None:
    for key, dtype in dtypes.items():
        if not jnp.issubdtype(dtype, jnp.floating):
            raise CheckpointError(f"{source}: param {key!r} has dtype {np.dtype(dtype).name}, expected a float")


def tree_num_params(params: Mapping[str, Any]) -> int:
    return int(sum(np.prod(np.shape(x)) for x in jax.tree_util.tree_leaves(params)))
