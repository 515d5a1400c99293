"""A prepared dataset re-written under another item-identifier scheme."""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from recjax.config import padded_vocab_size
from recjax.data import atomic
from recjax.items import schemes, vocabulary
from recjax.items.schemes import IndexOptions, ItemIndex, build_index
from recjax.data.prepared import METADATA_FILE, PreparedDataset, load_prepared, write_prepared_files

FLAN_T5_PIECES = 32_000  # FLAN-T5's SentencePiece model
LARGE_COLLISION_GROUP = 16  # items sharing all L codes above which `recjax index` warns
CODES_FILE = "item_codes.npy"  # int32 [num_items, L + 1] of a structured scheme


def with_index(dataset: PreparedDataset, index: ItemIndex) -> PreparedDataset:
    """`dataset` with its items written under `index` (same items, users, interactions, splits)."""
    info = None
    if index.code_pieces is not None:
        info = dict(index.info, code_pieces=list(index.code_pieces))
    return dataclasses.replace(dataset, item_ids=list(index.item_ids), indexing=index.scheme, index_info=info)


def reindex(src: str, out: str, options: IndexOptions, *, overwrite: bool = False, log=print,
            records: int = 0) -> tuple[PreparedDataset, ItemIndex]:
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
               "num_interactions", "has_ratings", "has_timestamps", "split", "split_times", "item_index"}  # write_prepared_files' own
    keep = {k: v for k, v in meta.items() if k not in written}
    keep["indexed_from"] = os.path.abspath(src)
    with atomic.atomic_directory(out, overwrite=overwrite) as tmp:
        write_prepared_files(indexed, tmp, extra_metadata=keep)
        if index.codes is not None:
            np.save(os.path.join(tmp, CODES_FILE), index.codes.astype(np.int32))
        if records:
            from recjax.data.user_records import write_user_records

            write_user_records(indexed, tmp, records)
    return indexed, index


def describe(index) -> list[str]:
    """What `recjax index` prints: codebook usage, collisions, the prefix tree, the VOCAB_SIZE to set."""
    info = index.info
    lines = [f"scheme {index.scheme}: {len(index.item_ids)} items, e.g. {index.item_ids[0]}"]
    if index.codes is None:
        return lines
    stats, coll = info["stats"], info["collisions"]
    for level, s in enumerate(stats["levels"]):
        lines.append(f"  level {schemes.LEVEL_LETTERS[level]}: {s['used']} of {s['of'] if level < info['levels'] else info['collision_code_size']} "
                     f"codes used, perplexity {s['perplexity']:.1f}")
    lines.append(f"  collisions before the extra code: {coll['colliding_items']} items ({coll['collision_rate']:.1%}) "
                 f"in groups of up to {coll['max_group']}; {coll['unique_prefixes']} distinct L-code prefixes")
    lines.append("  prefix tree: " + ", ".join(f"depth {t['depth']} {t['nodes']} nodes (fan-out {t['mean_fanout']:.1f})"
                                             for t in stats["tree"]))
    if coll["max_group"] > LARGE_COLLISION_GROUP:
        lines.append(f"warning: {coll['max_group']} items share one L-code prefix (largest groups: "
                     f"{', '.join(map(str, coll.get('largest_groups', [coll['max_group']])))}): their last code is an "
                     f"arbitrary {coll['max_group']}-way choice the model must memorise; more --levels or a larger "
                     f"--codebook_size (here {info['levels']} x {info['codebook_size']}), or --balanced, spread them")
    pieces = len(index.code_pieces)
    needed = padded_vocab_size(vocabulary.vocabulary_ids(FLAN_T5_PIECES, pieces))
    lines.append(f"  {pieces} vocabulary pieces appended after the tokenizer's; FLAN-T5 ({FLAN_T5_PIECES:,} pieces + "
                 f"{vocabulary.DEFAULT_EXTRA_IDS} sentinels) needs VOCAB_SIZE = {needed}, which Gin derives with "
                 f"VOCAB_SIZE = @items.vocab_size() (items.vocab_size.data_dir, .vocab_path)")
    return lines
