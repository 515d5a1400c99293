"""A recjax checkpoint written as an HF directory or a bfloat16 params-only checkpoint (what
`recjax export` runs).

    recjax export --checkpoint DIR --out DIR --format hf [--vocab spiece.model] [--step N]
    recjax export --checkpoint DIR --out DIR --format params_bf16 [--step N]

`hf` writes model.safetensors (sharded with model.safetensors.index.json above
--max_shard_size), config.json and generation_config.json, which
`transformers.T5ForConditionalGeneration.from_pretrained` loads; with --vocab also spiece.model,
tokenizer_config.json and special_tokens_map.json, which `T5Tokenizer.from_pretrained` loads
offline. Written with safetensors' numpy API: no torch or transformers needed.
`params_bf16` writes a params-only recjax checkpoint with bfloat16 params (inference; half the
size) and its config (param_dtype="bfloat16"). The output appears all at once or not at all.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from typing import Any, Mapping, Optional

import ml_dtypes
import numpy as np

from recjax import checkpoints, hf_mapping, param_tree
from recjax.checkpoints import CheckpointError
from recjax.config import EOS_ID, PAD_ID, T5Config

FORMATS = ("hf", "params_bf16")
NUM_SENTINELS = 100  # T5's <extra_id_0..99>, appended after the SentencePiece pieces
DEFAULT_MAX_SHARD_SIZE = "10GB"


def parse_size(text: str) -> int:
    """'5GB' / '500MB' / '64KB' / '1234' -> bytes (decimal units, as HF's max_shard_size)."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?B?)\s*", text.upper())
    if not match:
        raise CheckpointError(f"--max_shard_size {text!r}: expected a size such as 5GB, 500MB or 1234")
    unit = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9, "GB": 10**9}[match.group(2)]
    return int(match.group(1)) * unit


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_json(path: str, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def write_safetensors(tensors: Mapping[str, np.ndarray], directory: str, max_shard_bytes: int) -> list[str]:
    """Writes model.safetensors, or HF-named shards + model.safetensors.index.json; returns the files."""
    from safetensors.numpy import save_file

    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name, array in tensors.items():
        if shards[-1] and size + array.nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = array
        size += array.nbytes

    def _save(shard: dict[str, np.ndarray], name: str) -> None:
        path = os.path.join(directory, name)
        # transformers refuses safetensors without a known format tag.
        save_file(shard, path, metadata={"format": "pt"})
        os.chmod(path, 0o666 & ~_umask())  # safetensors creates files private (0600)

    if len(shards) == 1:
        _save(shards[0], "model.safetensors")
        return ["model.safetensors"]
    files, weight_map = [], {}
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        _save(shard, name)
        weight_map.update({k: name for k in shard})
        files.append(name)
    index = {"metadata": {"total_size": int(sum(a.nbytes for a in tensors.values()))}, "weight_map": weight_map}
    _write_json(os.path.join(directory, "model.safetensors.index.json"), index)
    return files + ["model.safetensors.index.json"]


def write_hf_tokenizer(vocab_path: str, directory: str, config: T5Config) -> list[str]:
    """Copies a T5 SentencePiece model as spiece.model and writes the tokenizer configs."""
    import sentencepiece as spm

    if not os.path.isfile(vocab_path):
        raise CheckpointError(f"{vocab_path}: no such SentencePiece model (--vocab)")
    try:
        sp = spm.SentencePieceProcessor(model_file=vocab_path)
    except Exception as e:  # sentencepiece raises RuntimeError/OSError with long text
        raise CheckpointError(f"{vocab_path}: not a SentencePiece model ({str(e).splitlines()[0]})") from None
    if (sp.pad_id(), sp.eos_id()) != (PAD_ID, EOS_ID):
        raise CheckpointError(f"{vocab_path}: pad_id={sp.pad_id()}, eos_id={sp.eos_id()}; a T5 vocabulary has "
                              f"pad_id={PAD_ID}, eos_id={EOS_ID}")
    # A vocabulary grown by item-code pieces (recjax.items.vocabulary.item_code_vocabulary) already holds the
    # sentinels, below the code pieces; a plain T5 one gets them appended by the tokenizer.
    extra_ids = 0 if sp.piece_to_id("\u2581<extra_id_0>") != sp.unk_id() else NUM_SENTINELS
    needed = sp.get_piece_size() + extra_ids
    if needed > config.vocab_size:
        raise CheckpointError(f"{vocab_path}: {sp.get_piece_size()} pieces + {extra_ids} sentinels = {needed} "
                              f"ids, more than the model's vocab_size {config.vocab_size}")
    shutil.copyfile(vocab_path, os.path.join(directory, "spiece.model"))
    special = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    _write_json(os.path.join(directory, "tokenizer_config.json"),
                {"tokenizer_class": "T5Tokenizer", "extra_ids": extra_ids, "model_max_length": 512, **special})
    _write_json(os.path.join(directory, "special_tokens_map.json"), special)
    return ["spiece.model", "tokenizer_config.json", "special_tokens_map.json"]


def export_hf(params: Mapping[str, Any], config: T5Config, directory: str, *, vocab: Optional[str] = None,
              max_shard_bytes: int = parse_size(DEFAULT_MAX_SHARD_SIZE)) -> list[str]:
    """Writes the HF files of `params` into an existing empty `directory`; returns their names."""
    hf_config = hf_mapping.t5config_to_hf(config)  # refuses configs HF would compute differently
    tensors = hf_mapping.params_to_hf(param_tree.flatten_params(params), config)
    files = write_safetensors(tensors, directory, max_shard_bytes)
    _write_json(os.path.join(directory, "config.json"), hf_config)
    _write_json(os.path.join(directory, "generation_config.json"), hf_mapping.hf_generation_config())
    files += ["config.json", "generation_config.json"]
    if vocab:
        files += write_hf_tokenizer(vocab, directory, config)
    return files


def to_bfloat16(params: Mapping[str, Any]) -> dict[str, Any]:
    flat = param_tree.flatten_params(params)
    return param_tree.unflatten_params({k: np.asarray(v).astype(ml_dtypes.bfloat16) for k, v in flat.items()})


def export(checkpoint: str, out: str, output_format: str, *, vocab: Optional[str] = None, step: Optional[int] = None,
           overwrite: bool = False, max_shard_size: str = DEFAULT_MAX_SHARD_SIZE) -> list[str]:
    """Exports a recjax checkpoint; returns the names of the files written into `out`."""
    if output_format not in FORMATS:
        raise CheckpointError(f"--format {output_format!r}: unknown format; expected one of {', '.join(FORMATS)}")
    if vocab and output_format != "hf":
        raise CheckpointError("--vocab only applies to --format hf")
    if os.path.lexists(out) and not overwrite:
        raise CheckpointError(f"{out}: already exists (pass --overwrite to replace it)")
    max_shard_bytes = parse_size(max_shard_size)
    with checkpoints.Checkpoint(checkpoint) as source:  # a checkpoint directory or a train run's MODEL_DIR
        params, used_step = source.restore_params(step)
        config = source.config
    with checkpoints.atomic_directory(out, overwrite=overwrite) as tmp:
        if output_format == "hf":
            files = export_hf(params, config, tmp, vocab=vocab, max_shard_bytes=max_shard_bytes)
        else:
            checkpoints.save_params(tmp, to_bfloat16(params), config.replace(param_dtype="bfloat16"), step=used_step)
            files = sorted(os.listdir(tmp))
    return files
