"""A prepared dataset re-written under another item-identifier scheme."""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from recjax.data import atomic
from recjax.items.schemes import IndexOptions, ItemIndex, build_index
from recjax.data.prepared import METADATA_FILE, PreparedDataset, load_prepared, write_prepared_files

CODES_FILE = "item_codes.npy"  # int32 [num_items, L + 1] of a structured scheme


def with_index(dataset: PreparedDataset, index: ItemIndex) -> PreparedDataset:
    """`dataset` with its items written under `index` (same items, users, interactions, splits)."""
    info = None
    if index.code_pieces is not None:
        info = dict(index.info, code_pieces=list(index.code_pieces))
    return dataclasses.replace(dataset, item_ids=list(index.item_ids), indexing=index.scheme, index_info=info)


def reindex(src: str, out: str, options: IndexOptions, *, overwrite: bool = False, log=print) -> tuple[PreparedDataset, ItemIndex]:
    """Reads the prepared dataset at `src`, builds `options.scheme`'s IDs from its training split and
    writes the re-indexed dataset to `out` (atomically; TFDS copy not included)."""
    dataset = load_prepared(src)
    if os.path.abspath(src) == os.path.abspath(out):
        raise ValueError(f"--out {out}: must differ from the source dataset")
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f"{out}: already exists (pass --overwrite to replace it)")
    index = build_index(dataset, options, log)
    indexed = with_index(dataset, index)
    with open(os.path.join(src, METADATA_FILE), encoding="utf-8") as f:
        meta = json.load(f)
    written = {"format_version", "name", "source_format", "indexing", "seed", "num_users", "num_items",
               "num_interactions", "has_ratings", "has_timestamps", "item_index"}  # write_prepared_files' own
    keep = {k: v for k, v in meta.items() if k not in written}
    keep["indexed_from"] = os.path.abspath(src)
    with atomic.atomic_directory(out, overwrite=overwrite) as tmp:
        write_prepared_files(indexed, tmp, extra_metadata=keep)
        if index.codes is not None:
            np.save(os.path.join(tmp, CODES_FILE), index.codes.astype(np.int32))
    return indexed, index
