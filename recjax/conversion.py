"""HF and T5X checkpoints read into recjax's format (what `recjax convert` runs).

`load_hf_checkpoint(dir)` and `load_t5x_checkpoint(path)` return `(params, config)`
(nested float32 numpy params with T5X names, a `T5Config`); `convert(...)` writes them with
`recjax.checkpoints.save_params` into a temporary directory renamed onto `--dst` at the end.

HF input: a `T5ForConditionalGeneration` directory with config.json and model.safetensors,
sharded safetensors (model.safetensors.index.json), or pytorch_model.bin (+ .index.json; needs
torch). T5X input: the legacy single msgpack file (arrays inline), a T5X `checkpoint_N`
directory (a msgpack `checkpoint` whose leaves are inline arrays or TensorStore zarr specs
relative to the directory), or a `checkpoint_N` directory written by T5X's orbax manager
(item `state/` holding `{'target': params, 'state': ...}`); a model directory holding
`checkpoint_*` picks the newest.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from typing import Any, Callable, Iterator, Optional

import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy, so safetensors can read BF16)
import numpy as np
from tqdm import tqdm

from recjax import checkpoints, param_tree
from recjax.checkpoints import CheckpointError
from recjax.config import T5Config
from recjax import hf_mapping

HF_CONFIG = "config.json"
HF_WEIGHT_FILES = ("model.safetensors.index.json", "model.safetensors",
                   "pytorch_model.bin.index.json", "pytorch_model.bin")
T5X_MSGPACK = "checkpoint"  # the msgpack file T5X writes in every checkpoint_N directory
T5X_ORBAX_ITEM = "state"  # the item T5X's orbax manager writes


# ----------------------------------------------------------------------------------------------
# HuggingFace.
# ----------------------------------------------------------------------------------------------

class _HFWeights:
    """Names, shapes (header only) and arrays of the tensors of an HF checkpoint directory."""

    def __init__(self, directory: str, stack: contextlib.ExitStack):
        self.directory = directory
        present = [f for f in HF_WEIGHT_FILES if os.path.isfile(os.path.join(directory, f))]
        if not present:
            raise CheckpointError(f"{directory}: no HF weights found (expected one of {', '.join(HF_WEIGHT_FILES)})")
        weights_file = os.path.join(directory, present[0])
        self.weights_file = weights_file  # named in errors about tensors that are absent
        self.file_of: dict[str, str] = {}  # tensor name -> file holding it
        if weights_file.endswith(".index.json"):
            try:
                with open(weights_file, encoding="utf-8") as f:
                    weight_map = json.load(f)["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise CheckpointError(f"{weights_file}: not a weight index (expected JSON with a "
                                      f"'weight_map'): {e}") from None
            for name, shard in weight_map.items():
                path = os.path.join(directory, shard)
                if not os.path.isfile(path):
                    raise CheckpointError(f"{path}: missing shard (listed in {weights_file} for {name!r})")
                self.file_of[name] = path
            files = sorted(set(self.file_of.values()))
        else:
            files = [weights_file]
        self._safetensors: dict[str, Any] = {}  # file -> open safetensors handle
        self._torch: dict[str, Any] = {}  # tensor name -> torch tensor (pytorch_model.bin)
        for path in files:
            if path.endswith(".safetensors"):
                handle = self._safetensors[path] = stack.enter_context(_open_safetensors(path))
                names = list(handle.keys())
            else:
                state = _torch_load(path)
                self._torch.update(state)
                names = list(state)
            for name in names:
                self.file_of.setdefault(name, path)
            listed = {n for n, p in self.file_of.items() if p == path}
            if listed - set(names):
                name = sorted(listed - set(names))[0]
                raise CheckpointError(f"{path}: missing tensor {name!r} (listed in {weights_file})")
        self.names = set(self.file_of)

    def where(self, name: str) -> str:
        return self.file_of.get(name, self.weights_file)

    def shape(self, name: str) -> tuple[int, ...]:
        path = self.file_of[name]
        if path in self._safetensors:
            return tuple(self._safetensors[path].get_slice(name).get_shape())
        return tuple(self._torch[name].shape)

    def read(self, name: str) -> np.ndarray:
        path = self.file_of[name]
        if path in self._safetensors:
            return self._safetensors[path].get_tensor(name)
        tensor = self._torch[name]
        return tensor.float().numpy() if tensor.is_floating_point() else tensor.numpy()


@contextlib.contextmanager
def _open_safetensors(path: str) -> Iterator[Any]:
    from safetensors import SafetensorError, safe_open
    try:
        handle = safe_open(path, framework="numpy")
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    with handle as f:
        yield f


def _torch_load(path: str) -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        raise CheckpointError(f"{path}: reading pytorch_model.bin needs torch (pip install torch); "
                              f"or save the model as safetensors") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file; report which file.
        raise CheckpointError(f"{path}: not a readable torch state dict ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    return state


def load_hf_config(directory: str) -> T5Config:
    path = os.path.join(directory, HF_CONFIG)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: missing (an HF model directory has config.json beside its weights)")
    with open(path, encoding="utf-8") as f:
        try:
            d = json.load(f)
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
    return hf_mapping.t5config_from_hf(d, source=path)


def load_hf_checkpoint(directory: str) -> tuple[dict[str, Any], T5Config]:
    """An HF T5 / FLAN-T5 directory -> (nested float32 params with T5X names, T5Config)."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        what = "not a directory" if os.path.exists(directory) else "no such directory"
        raise CheckpointError(f"{directory}: {what} (expected an HF model directory: config.json and weights)")
    config = load_hf_config(directory)
    with contextlib.ExitStack() as stack:
        weights = _HFWeights(directory, stack)
        flat = hf_mapping.hf_to_params(weights.names, weights.shape, _with_progress(weights.read, "reading HF"),
                                       config, weights.where)
    return param_tree.unflatten_params(flat), config


def _with_progress(read: Callable[[str], np.ndarray], desc: str) -> Callable[[str], np.ndarray]:
    bar = tqdm(desc=desc, unit="tensor", disable=None, leave=False)

    def wrapped(name: str) -> np.ndarray:
        bar.update(1)
        return read(name)
    return wrapped


# ----------------------------------------------------------------------------------------------
# T5X.
# ----------------------------------------------------------------------------------------------

def _is_tensorstore_spec(node: Any) -> bool:
    return isinstance(node, dict) and "driver" in node and ("kvstore" in node or "path" in node)


def _flatten_until_specs(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Like flatten_dict, but a TensorStore spec dict is a leaf, not a subtree."""
    if isinstance(tree, dict) and not _is_tensorstore_spec(tree):
        out = {}
        for key, value in tree.items():
            out.update(_flatten_until_specs(value, f"{prefix}/{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def _read_tensorstore(spec: dict[str, Any], checkpoint_dir: str, key: str) -> np.ndarray:
    """Reads one array T5X wrote with TensorStore; its kvstore path is relative to the checkpoint."""
    import tensorstore as ts

    kvstore = spec.get("kvstore")
    if isinstance(kvstore, dict) and kvstore.get("path"):
        relative = kvstore["path"]
    elif spec.get("path"):  # tensorstore < 0.1.14 kept `path` at the top level
        relative = spec["path"]
    else:
        raise CheckpointError(f"{checkpoint_dir}: param {key!r}: TensorStore spec without a path")
    # Written on GCS or through gfile, read from the local copy (as T5X does).
    path = os.path.normpath(os.path.join(checkpoint_dir, relative))  # specs end the path with "/"
    if not os.path.isdir(path):
        raise CheckpointError(f"{path}: missing TensorStore array for param {key!r}")
    open_spec = {"driver": spec.get("driver", "zarr"), "kvstore": {"driver": "file", "path": path}}
    try:
        store = ts.open(open_spec, open=True, read=True).result()
        return np.asarray(store.read().result())
    except Exception as e:  # tensorstore raises ValueError/RuntimeError variants with long text
        raise CheckpointError(f"{path}: cannot read TensorStore array for param {key!r}: "
                              f"{str(e).splitlines()[0]}") from None


def _read_t5x_msgpack(path: str) -> dict[str, Any]:
    from flax import serialization
    with open(path, "rb") as f:
        data = f.read()
    try:
        state = serialization.msgpack_restore(data)
    except Exception as e:  # msgpack raises several unrelated types for garbage
        raise CheckpointError(f"{path}: not a T5X msgpack checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or not isinstance(state.get("optimizer"), dict) \
            or "target" not in state["optimizer"]:
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: not a T5X checkpoint (expected {{'version', 'optimizer': "
                              f"{{'target': params, ...}}}}, found {keys})")
    return state["optimizer"]["target"]


def _read_orbax_pytree(item_dir: str) -> dict[str, Any]:
    import orbax.checkpoint as ocp
    checkpointer = ocp.PyTreeCheckpointer()
    try:
        metadata = checkpointer.metadata(item_dir).item_metadata.tree
    except Exception as e:
        raise CheckpointError(f"{item_dir}: not a readable orbax checkpoint ({str(e).splitlines()[0]})") from None
    restore_args = _map_tree(lambda m: ocp.RestoreArgs(restore_type=np.ndarray), metadata)
    tree = checkpointer.restore(item_dir, args=ocp.args.PyTreeRestore(restore_args=restore_args))
    if not isinstance(tree, dict) or "target" not in tree:
        raise CheckpointError(f"{item_dir}: not a T5X train state (expected {{'target': params, 'state': ...}})")
    return tree["target"]


def _map_tree(fn: Callable[[Any], Any], tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _map_tree(fn, v) for k, v in tree.items()}
    return fn(tree)


def _step_of(name: str) -> Optional[int]:
    match = re.fullmatch(r"checkpoint_(\d+)", name)
    return int(match.group(1)) if match else None


def _resolve_t5x_path(path: str) -> str:
    """A model directory with checkpoint_* subdirectories -> its newest checkpoint directory."""
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, T5X_MSGPACK)) \
            and not os.path.isdir(os.path.join(path, T5X_ORBAX_ITEM)):
        steps = sorted((s, n) for n in os.listdir(path) if (s := _step_of(n)) is not None)
        if steps:
            return os.path.join(path, steps[-1][1])
    return path


def read_t5x_params(path: str) -> dict[str, np.ndarray]:
    """Any supported T5X checkpoint -> {'/'-joined param path: numpy array} (stored dtype)."""
    path = _resolve_t5x_path(os.fspath(path))
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file or directory (expected a T5X checkpoint)")
    if os.path.isfile(path):  # legacy single file; specs (if any) are relative to its directory
        checkpoint_dir, target = os.path.dirname(path), _read_t5x_msgpack(path)
    elif os.path.isfile(os.path.join(path, T5X_MSGPACK)):
        checkpoint_dir, target = path, _read_t5x_msgpack(os.path.join(path, T5X_MSGPACK))
    elif os.path.isdir(os.path.join(path, T5X_ORBAX_ITEM)):
        return param_tree.flatten_params(_read_orbax_pytree(os.path.join(path, T5X_ORBAX_ITEM)))
    else:
        raise CheckpointError(f"{path}: not a T5X checkpoint directory (expected a '{T5X_MSGPACK}' msgpack file "
                              f"or an orbax '{T5X_ORBAX_ITEM}/' item, or checkpoint_N subdirectories)")
    flat = {}
    for key, leaf in tqdm(_flatten_until_specs(target).items(), desc="reading T5X", unit="param",
                          disable=None, leave=False):
        flat[key] = _read_tensorstore(leaf, checkpoint_dir, key) if _is_tensorstore_spec(leaf) else np.asarray(leaf)
    return flat


def _count_layers(shapes: dict[str, Any], stack: str) -> int:
    indices = {int(m.group(1)) for k in shapes if (m := re.match(rf"{stack}/layers_(\d+)/", k))}
    return max(indices) + 1 if indices else 0


def infer_t5x_config(shapes: dict[str, tuple[int, ...]], source: str) -> T5Config:
    """The T5Config of a T5 v1.1 param tree, from its shapes alone (T5X stores no config).

    Not recoverable from shapes, so T5X's / FLAN-T5's values are assumed: gated GELU when the
    MLP has wi_0 and wi_1, relative_attention_max_distance 128, layer_norm_epsilon 1e-6.
    """
    def shape(key: str, what: str) -> tuple[int, ...]:
        if key not in shapes:
            raise CheckpointError(f"{source}: missing param {key!r} (expected shape {what})")
        return tuple(shapes[key])

    vocab, embed = shape("token_embedder/embedding", "[vocab, embed]")
    num_heads, buckets = shape("encoder/relpos_bias/rel_embedding", "[heads, relpos_buckets]")
    joined = shape("encoder/layers_0/attention/query/kernel", f"[{embed}, heads*head_dim]")[1]
    if joined % num_heads:
        raise CheckpointError(f"{source}: query kernel width {joined} is not a multiple of num_heads {num_heads} "
                              f"(from encoder/relpos_bias/rel_embedding)")
    mlp = "encoder/layers_0/mlp"
    if f"{mlp}/wi_0/kernel" in shapes and f"{mlp}/wi_1/kernel" in shapes:
        activations = hf_mapping.GATED_GELU
        mlp_dim = shape(f"{mlp}/wi_0/kernel", f"[{embed}, mlp]")[1]
    elif f"{mlp}/wi/kernel" in shapes:
        raise CheckpointError(f"{source}: non-gated MLP ({mlp}/wi) is T5 v1.0; recjax supports "
                              f"T5 v1.1 / FLAN-T5 (gated GELU: wi_0, wi_1)")
    else:
        raise CheckpointError(f"{source}: missing param '{mlp}/wi_0/kernel' (expected shape [{embed}, mlp])")
    return T5Config(
        vocab_size=vocab, emb_dim=embed, num_heads=num_heads, head_dim=joined // num_heads,
        num_encoder_layers=_count_layers(shapes, "encoder") or 1,
        num_decoder_layers=_count_layers(shapes, "decoder") or 1,
        mlp_dim=mlp_dim, mlp_activations=activations, dropout_rate=0.0,
        logits_via_embedding="decoder/logits_dense/kernel" not in shapes,
        relative_attention_num_buckets=buckets)


def load_t5x_checkpoint(path: str) -> tuple[dict[str, Any], T5Config]:
    """A T5X checkpoint (file or directory) -> (nested float32 params, inferred T5Config)."""
    source = os.fspath(path)
    flat = read_t5x_params(source)
    shapes = {k: tuple(np.shape(v)) for k, v in flat.items()}
    config = infer_t5x_config(shapes, source)
    param_tree.validate_param_shapes(shapes, config, source)
    flat = {k: np.asarray(v, np.float32) for k, v in flat.items()}
    return param_tree.unflatten_params(flat), config


# ----------------------------------------------------------------------------------------------
# The binary.
# ----------------------------------------------------------------------------------------------

LOADERS = {"hf": load_hf_checkpoint, "t5x": load_t5x_checkpoint}


def convert(source_format: str, src: str, dst: str, *, overwrite: bool = False,
            step: int = 0, vocab_size: Optional[int] = None, seed: int = 0) -> tuple[T5Config, int]:
    """Converts `src` into a recjax checkpoint at `dst`; returns (config, number of params).
    `vocab_size`: grow the embedding and output layer to this many ids (item-code tokens of a
    structured item-ID scheme; `checkpoints.grow_vocabulary`)."""
    if source_format not in LOADERS:
        raise CheckpointError(f"--from {source_format!r}: unknown format; expected one of {', '.join(LOADERS)}")
    if not os.path.exists(src):
        raise CheckpointError(f"{src}: no such file or directory")
    if os.path.lexists(dst) and not overwrite:
        raise CheckpointError(f"{dst}: already exists (pass --overwrite to replace it)")
    params, config = LOADERS[source_format](src)
    if vocab_size is not None and vocab_size != config.vocab_size:
        params, config = checkpoints.grow_vocabulary(params, config, vocab_size, seed)
    with checkpoints.atomic_directory(dst, overwrite=overwrite) as tmp:
        checkpoints.save_params(tmp, params, config, step=step)
    return config, param_tree.tree_num_params(params)
