"""THE table between recjax / T5X param paths and HuggingFace `T5ForConditionalGeneration` names.

Every tensor maps 1:1; the only transform is a transpose of 2-D tensors (T5X kernels are
`[in, out]`, torch `Linear` weights `[out, in]`; T5X's `rel_embedding` is `[heads, buckets]`,
HF's `relative_attention_bias` `[buckets, heads]`). Query kernels are NOT rescaled: neither T5X
nor HF scales attention logits by 1/sqrt(head_dim) at run time (T5X folds it into the query
initializer, HF into its init), so the stored values mean the same thing in both.

Only T5 v1.1 / FLAN-T5 models are supported: gated-GELU MLP and an untied `lm_head` without
output rescaling. HF `feed_forward_proj="relu"` (T5 v1.0) and tied, rescaled logits are refused
with a message instead of being converted into a model that computes something else.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np

from recjax.param_tree import CheckpointError, expected_param_shapes, mlp_input_names
from recjax.config import DECODER_START_ID, EOS_ID, PAD_ID, T5Config

# HF tensors that carry no information of their own: tied copies of `shared.weight`, and the
# unused cross-attention bias some old T5 checkpoints store.
HF_REDUNDANT_TENSORS = frozenset({
    "encoder.embed_tokens.weight",
    "decoder.embed_tokens.weight",
    "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",
})

SUPPORTED_HF_FEED_FORWARD = "gated-gelu"
GATED_GELU = ("gelu", "linear")


@dataclasses.dataclass(frozen=True)
class TensorMapping:
    path: str  # recjax / T5X param path, '/'-joined
    hf_name: str  # HF state-dict key
    transpose: bool  # 2-D: HF stores the transpose of the T5X layout


def tensor_mappings(config: T5Config) -> list[TensorMapping]:
    """The full table for `config`, one row per recjax param, in recjax's order."""
    rows: list[TensorMapping] = [TensorMapping("token_embedder/embedding", "shared.weight", False)]
    hf_attention = {"query": "q", "key": "k", "value": "v", "out": "o"}

    def attention(path: str, hf: str) -> None:
        for name, hf_short in hf_attention.items():
            rows.append(TensorMapping(f"{path}/{name}/kernel", f"{hf}.{hf_short}.weight", True))

    def mlp(path: str, hf: str) -> None:
        for name in mlp_input_names(config):  # wi_0, wi_1 (HF uses the same names)
            rows.append(TensorMapping(f"{path}/{name}/kernel", f"{hf}.DenseReluDense.{name}.weight", True))
        rows.append(TensorMapping(f"{path}/wo/kernel", f"{hf}.DenseReluDense.wo.weight", True))

    def norm(path: str, hf: str) -> None:
        rows.append(TensorMapping(f"{path}/scale", f"{hf}.weight", False))

    # HF keeps the stack's one relative-position bias in block 0 (the other blocks share it).
    rows.append(TensorMapping("encoder/relpos_bias/rel_embedding",
                              "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", True))
    for i in range(config.num_encoder_layers):
        path, hf = f"encoder/layers_{i}", f"encoder.block.{i}.layer"
        norm(f"{path}/pre_attention_layer_norm", f"{hf}.0.layer_norm")
        attention(f"{path}/attention", f"{hf}.0.SelfAttention")
        norm(f"{path}/pre_mlp_layer_norm", f"{hf}.1.layer_norm")
        mlp(f"{path}/mlp", f"{hf}.1")
    norm("encoder/encoder_norm", "encoder.final_layer_norm")

    rows.append(TensorMapping("decoder/relpos_bias/rel_embedding",
                              "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", True))
    for i in range(config.num_decoder_layers):
        path, hf = f"decoder/layers_{i}", f"decoder.block.{i}.layer"
        norm(f"{path}/pre_self_attention_layer_norm", f"{hf}.0.layer_norm")
        attention(f"{path}/self_attention", f"{hf}.0.SelfAttention")
        norm(f"{path}/pre_cross_attention_layer_norm", f"{hf}.1.layer_norm")
        attention(f"{path}/encoder_decoder_attention", f"{hf}.1.EncDecAttention")
        norm(f"{path}/pre_mlp_layer_norm", f"{hf}.2.layer_norm")
        mlp(f"{path}/mlp", f"{hf}.2")
    norm("decoder/decoder_norm", "decoder.final_layer_norm")
    if not config.logits_via_embedding:
        rows.append(TensorMapping("decoder/logits_dense/kernel", "lm_head.weight", True))

    expected = expected_param_shapes(config)
    assert [r.path for r in rows] == list(expected), "hf_mapping table out of step with expected_param_shapes"
    return rows


def hf_shape(row: TensorMapping, config: T5Config) -> tuple[int, ...]:
    shape = expected_param_shapes(config)[row.path]
    return tuple(reversed(shape)) if row.transpose else shape


def params_to_hf(flat_params: Mapping[str, Any], config: T5Config) -> dict[str, np.ndarray]:
    """{recjax path: array} -> {HF name: C-contiguous numpy array} (same dtype, values untouched)."""
    out = {}
    for row in tensor_mappings(config):
        value = np.asarray(flat_params[row.path])
        out[row.hf_name] = np.ascontiguousarray(value.T if row.transpose else value)
    return out


def hf_to_params(names: set[str], shape_of: Callable[[str], tuple[int, ...]],
                 read: Callable[[str], np.ndarray], config: T5Config,
                 where: Callable[[str], str]) -> dict[str, np.ndarray]:
    """HF tensors -> {recjax path: float32 array}, every name and shape checked first.

    `names`: the tensor names the checkpoint holds; `shape_of(name)` reads a shape without the
    data; `read(name)` the array; `where(name)` the file to name in an error.
    """
    rows = tensor_mappings(config)
    for row in rows:
        want = hf_shape(row, config)
        if row.hf_name not in names:
            raise CheckpointError(f"{where(row.hf_name)}: missing tensor {row.hf_name!r} "
                                  f"(expected shape {list(want)})")
        got = tuple(shape_of(row.hf_name))
        if got != want:
            raise CheckpointError(f"{where(row.hf_name)}: tensor {row.hf_name!r} has shape {list(got)}, "
                                  f"expected {list(want)}")
    known = {row.hf_name for row in rows} | HF_REDUNDANT_TENSORS
    unexpected = sorted(names - known)
    if unexpected:
        raise CheckpointError(f"{where(unexpected[0])}: unexpected tensor {unexpected[0]!r}: not part of a "
                              f"T5ForConditionalGeneration with this config.json"
                              + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
    flat = {}
    for row in rows:
        value = np.asarray(read(row.hf_name)).astype(np.float32)  # bf16/fp16 -> f32 is exact
        flat[row.path] = np.ascontiguousarray(value.T if row.transpose else value)
    return flat


# ----------------------------------------------------------------------------------------------
# Configs.
# ----------------------------------------------------------------------------------------------



def t5config_to_hf(cfg: T5Config) -> dict[str, Any]:
    """recjax T5Config -> HF config.json dict (the fields FLAN-T5's own config.json has)."""
    if cfg.logits_via_embedding:
        raise CheckpointError("export to HF: logits_via_embedding=True (tied, rescaled logits) is not supported; "
                              "recjax exports T5 v1.1 / FLAN-T5 models with an untied logits_dense")
    if tuple(cfg.mlp_activations) != GATED_GELU:
        raise CheckpointError(f"export to HF: mlp_activations={list(cfg.mlp_activations)} is not supported; "
                              f"HF 'gated-gelu' is {list(GATED_GELU)}")
    return {
        "architectures": ["T5ForConditionalGeneration"],
        "model_type": "t5",
        "d_model": cfg.emb_dim,
        "d_kv": cfg.head_dim,
        "d_ff": cfg.mlp_dim,
        "num_layers": cfg.num_encoder_layers,
        "num_decoder_layers": cfg.num_decoder_layers,
        "num_heads": cfg.num_heads,
        "relative_attention_num_buckets": cfg.relative_attention_num_buckets,
        "relative_attention_max_distance": cfg.relative_attention_max_distance,
        "feed_forward_proj": SUPPORTED_HF_FEED_FORWARD,
        "dense_act_fn": "gelu_new",  # HF's name for the tanh-approximated GELU T5X uses
        "is_gated_act": True,
        "tie_word_embeddings": False,
        "vocab_size": cfg.vocab_size,
        "layer_norm_epsilon": cfg.layer_norm_epsilon,
        "dropout_rate": cfg.dropout_rate,
        "initializer_factor": 1.0,
        "decoder_start_token_id": DECODER_START_ID,
        "pad_token_id": PAD_ID,
        "eos_token_id": EOS_ID,
        "is_encoder_decoder": True,
        "use_cache": True,
        "torch_dtype": "float32",
    }


def hf_generation_config() -> dict[str, Any]:
    return {"decoder_start_token_id": DECODER_START_ID, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID}


def t5config_from_hf(d: Mapping[str, Any], source: str) -> T5Config:
    """HF config.json dict -> T5Config; refuses models recjax's network would compute differently."""
    def need(key: str) -> Any:
        if key not in d:
            raise CheckpointError(f"{source}: missing key {key!r}")
        return d[key]

    model_type = d.get("model_type")
    if model_type != "t5":
        raise CheckpointError(f"{source}: model_type={model_type!r}, expected 't5' (T5 v1.1 / FLAN-T5)")
    feed_forward = d.get("feed_forward_proj", "relu")  # HF's default is T5 v1.0's relu
    if feed_forward != SUPPORTED_HF_FEED_FORWARD:
        raise CheckpointError(f"{source}: feed_forward_proj={feed_forward!r} is not supported; recjax implements "
                              f"T5 v1.1 / FLAN-T5 ({SUPPORTED_HF_FEED_FORWARD!r})")
    # transformers >= 5 writes tie_word_embeddings=true for every T5 and keeps the real switch in
    # scale_decoder_outputs; older configs (and the Hub's FLAN-T5) only have tie_word_embeddings.
    if "scale_decoder_outputs" in d:
        tied = bool(d["scale_decoder_outputs"])
    else:
        tied = bool(d.get("tie_word_embeddings", True))
    if tied:
        raise CheckpointError(f"{source}: tie_word_embeddings=true (T5 v1.0-style tied logits rescaled by "
                              f"d_model**-0.5) is not supported; T5 v1.1 / FLAN-T5 have tie_word_embeddings=false")
    for key, want in (("pad_token_id", PAD_ID), ("decoder_start_token_id", DECODER_START_ID)):
        if d.get(key, want) not in (want, None):
            raise CheckpointError(f"{source}: {key}={d[key]!r}, expected {want} (the T5 vocabulary)")
    num_layers = int(need("num_layers"))
    decoder_layers = d.get("num_decoder_layers")
    try:
        return T5Config(
            vocab_size=int(need("vocab_size")),
            emb_dim=int(need("d_model")),
            num_heads=int(need("num_heads")),
            head_dim=int(need("d_kv")),
            num_encoder_layers=num_layers,
            num_decoder_layers=int(decoder_layers) if decoder_layers is not None else num_layers,
            mlp_dim=int(need("d_ff")),
            mlp_activations=GATED_GELU,
            dropout_rate=float(d.get("dropout_rate", 0.1)),
            logits_via_embedding=False,
            relative_attention_num_buckets=int(d.get("relative_attention_num_buckets", 32)),
            relative_attention_max_distance=int(d.get("relative_attention_max_distance", 128)),
            layer_norm_epsilon=float(d.get("layer_norm_epsilon", 1e-6)),
        )
    except ValueError as e:
        raise CheckpointError(f"{source}: {e}") from None
