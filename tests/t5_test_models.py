"""Tiny reference checkpoints for the convert/export tests, written by the real libraries.

- HF: a random `transformers.T5ForConditionalGeneration` (heads*d_kv != d_model, unequal
  encoder/decoder depth, non-default relative-position settings) with EVERY tensor randomized,
  RMSNorm scales included (a fresh HF model has them all at 1.0, which would hide a misplaced
  scale), saved with `save_pretrained` (single and sharded safetensors) or `torch.save`
  (legacy pytorch_model.bin, tied copies included, as old checkpoints have them).
- T5X: the real tiny checkpoint from ../shared/data rewritten in the two directory layouts T5X
  writes: its native `checkpoint_N/` (msgpack `checkpoint` whose leaves are TensorStore zarr
  specs relative to the directory, as `t5x.checkpoints.Checkpointer` writes them), and its orbax
  manager's `checkpoint_N/state/` (`{'target': params, 'state': ...}`).
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np

HF_TINY = dict(vocab_size=72, d_model=16, d_kv=6, num_heads=3, d_ff=24, num_layers=2, num_decoder_layers=3,
               relative_attention_num_buckets=8, relative_attention_max_distance=20, layer_norm_epsilon=1e-5,
               dropout_rate=0.1, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
               decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)


def random_hf_model(seed: int = 0):
    """A T5ForConditionalGeneration (eval mode) with every tensor random and lm_head untied."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(T5Config(**HF_TINY))
    # transformers 5.x keeps lm_head tied to `shared` even with tie_word_embeddings=False.
    model.lm_head.weight = torch.nn.Parameter(torch.empty_like(model.lm_head.weight))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("layer_norm.weight"):
                param.uniform_(0.5, 1.5)
            else:
                param.normal_(0.0, 0.5)
    assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()
    return model.eval()


def save_hf(model, directory: str, layout: str) -> str:
    """layout: 'safetensors' | 'sharded' (HF's index + shards) | 'bin' | 'bin_sharded' (torch.save)."""
    import torch

    os.makedirs(directory, exist_ok=True)
    if layout == "safetensors":
        model.save_pretrained(directory)
    elif layout == "sharded":
        model.save_pretrained(directory, max_shard_size="20KB")
        assert os.path.exists(os.path.join(directory, "model.safetensors.index.json"))
    elif layout == "bin":
        model.config.save_pretrained(directory)
        state = {k: v.clone() for k, v in model.state_dict().items()}  # embed_tokens copies included
        torch.save(state, os.path.join(directory, "pytorch_model.bin"))
    elif layout == "bin_sharded":  # transformers 4.x's sharded .bin: two torch.save files + index
        model.config.save_pretrained(directory)
        names = list(model.state_dict())
        weight_map = {}
        for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2:])):
            file = f"pytorch_model-{i + 1:05d}-of-00002.bin"
            torch.save({k: model.state_dict()[k].clone() for k in part}, os.path.join(directory, file))
            weight_map.update({k: file for k in part})
        with open(os.path.join(directory, "pytorch_model.bin.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": weight_map}, f)
    else:
        raise ValueError(layout)
    return directory


def hub_style_config(directory: str) -> None:
    """Rewrites config.json the way the Hub's FLAN-T5 has it (transformers 4.x era)."""
    path = os.path.join(directory, "config.json")
    with open(path) as f:
        d = json.load(f)
    d["tie_word_embeddings"] = False
    d.pop("scale_decoder_outputs", None)
    with open(path, "w") as f:
        json.dump(d, f)


def read_t5x_legacy(path) -> dict:
    from flax import serialization
    with open(path, "rb") as f:
        return serialization.msgpack_restore(f.read())


def write_t5x_tensorstore_checkpoint(legacy: dict, model_dir: str, step: int, inline_suffix: str = "/scale") -> str:
    """T5X's native layout: params whose path ends with `inline_suffix` stay inline in the
    msgpack (T5X does that for unpartitioned params), the rest go to gzip zarr arrays named
    `target.<dotted path>`, referenced by their TensorStore spec (relative kvstore path)."""
    import tensorstore as ts
    from flax import serialization, traverse_util

    checkpoint_dir = os.path.join(model_dir, f"checkpoint_{step}")
    os.makedirs(checkpoint_dir)
    flat = traverse_util.flatten_dict(legacy["optimizer"]["target"], sep="/")
    target = {}
    for key, array in flat.items():
        if key.endswith(inline_suffix):
            target[key] = array
            continue
        name = "target." + key.replace("/", ".")
        chunks = list(array.shape)
        chunks[0] = max(1, chunks[0] // 2) if chunks[0] % 2 == 0 else chunks[0]  # >1 chunk where it divides
        spec = {"driver": "zarr", "dtype": array.dtype.name, "kvstore": {"driver": "file", "path": name},
                "metadata": {"compressor": {"id": "gzip"}, "shape": list(array.shape), "chunks": chunks}}
        absolute = dict(spec, kvstore={"driver": "file", "path": os.path.join(checkpoint_dir, name)})
        ts.open(absolute, create=True, open=True).result().write(array).result()
        target[key] = ts.Spec(spec).to_json()  # what T5X serializes in place of the array
    state = {"version": 3, "optimizer": {"target": traverse_util.unflatten_dict(target, sep="/"),
                                         "state": legacy["optimizer"]["state"]}}
    with open(os.path.join(checkpoint_dir, "checkpoint"), "wb") as f:
        f.write(serialization.msgpack_serialize(state))
    return checkpoint_dir


def write_t5x_orbax_checkpoint(legacy: dict, model_dir: str, step: int) -> str:
    """T5X's OrbaxCheckpointManagerInterface layout: checkpoint_<step>/state/ (PyTree, no OCDBT)."""
    import orbax.checkpoint as ocp

    state = {"target": legacy["optimizer"]["target"],
             "state": {"step": np.int32(step), "param_states": legacy["optimizer"]["state"]["param_states"]}}
    manager = ocp.CheckpointManager(
        os.path.abspath(model_dir), item_handlers={"state": ocp.PyTreeCheckpointHandler(use_ocdbt=False)},
        options=ocp.CheckpointManagerOptions(step_prefix="checkpoint", create=True))
    manager.save(step, args=ocp.args.Composite(state=ocp.args.PyTreeSave(state)))
    manager.wait_until_finished()
    manager.close()
    return os.path.join(model_dir, f"checkpoint_{step}")


def copy_tree(src: str, dst: str) -> str:
    shutil.copytree(src, dst)
    return dst
