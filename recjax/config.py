"""The T5 v1.1 / FLAN-T5 network configuration (the hyper-parameters T5X's `network.T5Config` has)."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import gin

CONFIG_FILENAME = "model_config.json"
VOCAB_MULTIPLE = 128  # T5X / FLAN-T5 pad the vocabulary to a multiple of 128 (32,100 ids -> 32,128)
# T5's special ids (every T5 / FLAN-T5 vocabulary): padding, which is also the decoder's start
# token (T5 shifts targets right by one pad), and end of sequence. Masks are `token id > 0`.
PAD_ID, EOS_ID = 0, 1
DECODER_START_ID = PAD_ID


def padded_vocab_size(ids: int) -> int:
    """The model vocab_size for a tokenizer of `ids` ids: rounded up to a multiple of 128."""
    return -(-int(ids) // VOCAB_MULTIPLE) * VOCAB_MULTIPLE


@gin.configurable
@dataclasses.dataclass(frozen=True)
class T5Config:
    """Shapes and numerics of an encoder-decoder T5 v1.1 network.

    Field names follow T5X (`emb_dim`, `mlp_dim`, `head_dim`, ...); `recjax.hf_mapping` translates
    them to HuggingFace's `T5Config` (`d_model`, `d_ff`, `d_kv`, ...).
    """

    vocab_size: int = 32128
    emb_dim: int = 512
    num_heads: int = 6
    head_dim: int = 64
    num_encoder_layers: int = 8
    num_decoder_layers: int = 8
    mlp_dim: int = 1024
    mlp_activations: tuple[str, ...] = ("gelu", "linear")  # gated GELU, as T5 v1.1
    dropout_rate: float = 0.0
    logits_via_embedding: bool = False  # v1.1: untied float32 `decoder/logits_dense`
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    dtype: str = "float32"  # activation / compute dtype ("bfloat16" on accelerators)
    param_dtype: str = "float32"

    def __post_init__(self):
        # Gin and JSON give lists; keep the dataclass hashable for jit static args.
        object.__setattr__(self, "mlp_activations", tuple(self.mlp_activations))
        for name in ("vocab_size", "emb_dim", "num_heads", "head_dim", "num_encoder_layers",
                     "num_decoder_layers", "mlp_dim", "relative_attention_num_buckets"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"T5Config.{name} must be a positive int, got {value!r}")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"T5Config.dtype must be float32, bfloat16 or float16, got {self.dtype!r}")

    def replace(self, **changes: Any) -> "T5Config":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mlp_activations"] = list(self.mlp_activations)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> "T5Config":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{source}: unknown T5Config keys {unknown}; expected a subset of {sorted(known)}")
        return cls(**d)

    def save(self, directory: str) -> str:
        """Writes `model_config.json` into `directory` atomically; returns its path."""
        from recjax.data.atomic import atomic_write

        path = os.path.join(directory, CONFIG_FILENAME)
        atomic_write(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, directory_or_file: str) -> "T5Config":
        path = directory_or_file
        if os.path.isdir(path):
            path = os.path.join(path, CONFIG_FILENAME)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no model config (expected {CONFIG_FILENAME} written by recjax)")
        with open(path, encoding="utf-8") as f:
            try:
                d = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
        return cls.from_dict(d, source=path)


# T5 v1.1 / FLAN-T5 shapes (vocab 32128 = 32000 pieces + 100 sentinels, padded to a multiple of 128).
SIZES: dict[str, T5Config] = {
    "small": T5Config(emb_dim=512, num_heads=6, head_dim=64, num_encoder_layers=8,
                      num_decoder_layers=8, mlp_dim=1024),
    "base": T5Config(emb_dim=768, num_heads=12, head_dim=64, num_encoder_layers=12,
                     num_decoder_layers=12, mlp_dim=2048),
    "large": T5Config(emb_dim=1024, num_heads=16, head_dim=64, num_encoder_layers=24,
                      num_decoder_layers=24, mlp_dim=2816),
    "xl": T5Config(emb_dim=2048, num_heads=32, head_dim=64, num_encoder_layers=24,
                   num_decoder_layers=24, mlp_dim=5120),
    "xxl": T5Config(emb_dim=4096, num_heads=64, head_dim=64, num_encoder_layers=24,
                    num_decoder_layers=24, mlp_dim=10240),
    # T5X's tiny test model (the shapes of ../shared/data/t5x_tiny).
    "t5x_tiny": T5Config(emb_dim=8, num_heads=4, head_dim=3, num_encoder_layers=2,
                         num_decoder_layers=2, mlp_dim=16),
}
