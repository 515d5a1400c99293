"""A prepared recommendation dataset: the item catalog, per-user time-ordered interactions, the
splits and the item-ID mapping, plus `load_prepared` to read one from disk.

Storage layout of a prepared directory (written by `recjax prepare`, see recjax/data/README.md):

    DIR/
      prepared.json      metadata: format version, name, source format, indexing, seed, counts,
                         records dropped by documented policies, the source files read
      items.json         columns of the catalog, one entry per internal item index 0..N-1:
                         item_ids (the text the model writes), titles, original_ids, attributes
      users.json         original user id per internal user index
      interactions.npz   flat arrays over all interactions, users back to back, each user's
                         interactions in time order:
                           user_offsets int64 [num_users + 1]   user u owns [off[u], off[u+1])
                           items        int32 [num_interactions]  internal item indices
                           ratings      float32 [num_interactions]  (only if the source has them)
                           timestamps   int64 [num_interactions]  (only if the source has them)
                           rating_split int8 [num_interactions]  0 train / 1 valid / 2 test
                                        (P5's seeded 80/10/10 split of rating records)
                           split        int8 [num_interactions]  0 train / 1 valid / 2 test of a
                                        timestamp split (only then; prepared.json "split_times")
      tfds/              the same dataset as a TFDS dataset (see recjax/data/tfds_builder.py)

`load_prepared` reads only the numpy/JSON files, so it needs neither TensorFlow nor a TFDS
reader and loads Beauty in well under a second.
"""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from recjax.data.errors import NotPreparedError  # noqa: F401 (its historical home; re-exported)

FORMAT_VERSION = 1
METADATA_FILE = "prepared.json"
ITEMS_FILE = "items.json"
USERS_FILE = "users.json"
INTERACTIONS_FILE = "interactions.npz"

RATING_SPLITS = {"train": 0, "valid": 1, "test": 2}
SPLIT_SCHEMES = ("leave_last_out", "timestamp")


@dataclasses.dataclass
class PreparedDataset:
    name: str
    indexing: str  # the item-ID scheme: "random" | "sequential" | a structured one (recjax.items.schemes)
    item_ids: list[str]  # the text the model writes for internal item i
    item_titles: list[str]  # title, or the keyword text of the P5/S3-Rec data
    item_original_ids: list[str]  # ASIN / movie id / original numeric id
    item_attributes: list[list[str]]  # may be empty lists
    sequences: list[np.ndarray]  # per user: int32 internal item indices, time-ordered, full
    ratings: list[np.ndarray] | None  # per user: float32 aligned with sequences
    timestamps: list[np.ndarray] | None  # per user: int64 unix seconds aligned with sequences
    user_original_ids: list[str] = dataclasses.field(default_factory=list)
    # per user: int8 aligned with sequences, 0/1/2 = rating train/valid/test; None without ratings
    rating_splits: list[np.ndarray] | None = None
    source_format: str = ""
    seed: int = 0
    item_prices: list[float | None] | None = None  # Amazon meta price, None where unknown
    # Structured identifiers (`recjax index`): the scheme's options and figures, with
    # "code_pieces", the vocabulary pieces the IDs are written in; None for numeric IDs.
    index_info: dict | None = None
    # per user: int8 aligned with sequences, 0 train / 1 valid / 2 test of a timestamp split
    # (cut points `split_times`, in the source's time unit); None under leave-last-out
    interaction_splits: list[np.ndarray] | None = None
    split_times: tuple[int, int] | None = None
    # A process's block of users (`load_prepared(..., process_index=, process_count=)`): local user
    # u is global user user_offset + u of total_users; 0 / None for the whole dataset.
    user_offset: int = 0
    total_users: int | None = None

    def __post_init__(self):
        self._index_of_id: dict[str, int] | None = None

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def num_users(self) -> int:
        return len(self.sequences)

    @property
    def num_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    @property
    def code_pieces(self) -> list[str] | None:
        """Vocabulary pieces of a structured scheme's IDs (appended after the tokenizer's), or None."""
        return None if self.index_info is None else list(self.index_info["code_pieces"])

    def item_index(self, item_id: str) -> int:
        """recjax ID text (what the model writes) -> internal item index."""
        if self._index_of_id is None:
            self._index_of_id = {text: i for i, text in enumerate(self.item_ids)}
        try:
            return self._index_of_id[item_id]
        except KeyError:
            raise KeyError(
                f"{item_id!r} is not an item ID of dataset {self.name!r} "
                f"({self.indexing} indexing, IDs are {self.item_ids[0]!r}..., {self.num_items} items)"
            ) from None

    @property
    def split_scheme(self) -> str:
        """"leave_last_out" (the last interaction tests, the one before validates) or "timestamp"."""
        return "leave_last_out" if self.interaction_splits is None else "timestamp"

    def train_sequences(self) -> list[np.ndarray]:
        """Per user, everything a model may train on: seq[:-2] under leave-last-out; the
        interactions before the first cut point under a timestamp split (a prefix of seq)."""
        if self.interaction_splits is not None:
            return [s[c == 0] for s, c in zip(self.sequences, self.interaction_splits)]
        return [s[:-2] for s in self.sequences]

    def next_item_cases(self, split: str) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """Evaluation cases (users int32 [n], histories, targets int32 [n]) of "valid" or "test":
        leave-last-out, one a user (`loo_split`); a timestamp split, one per interaction of the
        split, its history every earlier interaction of the user (as the Amazon 2023 benchmark's
        `timestamp_w_his` files: a test case's history holds the validation interactions)."""
        if self.interaction_splits is None:
            histories, targets = self.loo_split(split)
            return np.arange(self.num_users, dtype=np.int32), histories, targets
        if split not in ("valid", "test"):
            raise ValueError(f"next_item_cases: split must be 'valid' or 'test', got {split!r}")
        code = RATING_SPLITS[split]
        users, histories, targets = [], [], []
        for u, (seq, labels) in enumerate(zip(self.sequences, self.interaction_splits)):
            for p in np.flatnonzero(labels == code).tolist():
                users.append(u)
                histories.append(seq[:p])
                targets.append(seq[p])
        return np.asarray(users, np.int32), histories, np.asarray(targets, np.int32)

    def loo_split(self, split: str) -> tuple[list[np.ndarray], np.ndarray]:
        """Leave-one-out evaluation split: (histories, targets int32 [num_users]).

        "valid": history = seq[:-2], target = seq[-2]; "test": history = seq[:-1], target = seq[-1].
        For training data use `train_sequences()`; under a timestamp split, `next_item_cases`.
        """
        if self.interaction_splits is not None:
            raise ValueError(f"dataset {self.name!r} has a timestamp split (cut points {self.split_times}): a case per "
                             "held-out interaction, not one a user; leave-one-out evaluation (the in-repo baselines) "
                             "needs `recjax prepare --split leave_last_out`, and next_item_cases(split) gives the cases")
        if split == "valid":
            return [s[:-2] for s in self.sequences], np.array([s[-2] for s in self.sequences], np.int32)
        if split == "test":
            return [s[:-1] for s in self.sequences], np.array([s[-1] for s in self.sequences], np.int32)
        raise ValueError(f"loo_split: split must be 'valid' or 'test' (use train_sequences() for training), got {split!r}")

    def rating_split(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """P5's seeded 80/10/10 split of the rating records: (user_idx int32, item_idx int32, rating float32)."""
        if split not in RATING_SPLITS:
            raise ValueError(f"rating_split: split must be one of {sorted(RATING_SPLITS)}, got {split!r}")
        if self.ratings is None or self.rating_splits is None:
            raise ValueError(f"dataset {self.name!r} ({self.source_format or 'unknown'} format) has no ratings")
        code = RATING_SPLITS[split]
        users = np.repeat(np.arange(self.num_users, dtype=np.int32), [len(s) for s in self.sequences])
        items = np.concatenate(self.sequences).astype(np.int32)
        ratings = np.concatenate(self.ratings).astype(np.float32)
        keep = np.concatenate(self.rating_splits) == code
        return users[keep], items[keep], ratings[keep]


def _split_flat(flat: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return np.split(flat, offsets[1:-1])


def load_prepared(directory: str, process_index: int | None = None, process_count: int | None = None) -> PreparedDataset:
    """Read a directory written by `recjax prepare` (or `recjax.data.writing.make_synthetic`).

    With `process_index` and `process_count`: the catalog and only that process's contiguous block
    of users, read from the ArrayRecord user records (`recjax prepare --records N`), so that no
    process holds every user (the dataset's `user_offset` / `total_users` say which block)."""
    directory = os.fspath(directory)
    meta, items = _read_catalog(directory)
    if process_index is not None or process_count is not None:
        from recjax.data.user_records import UserRecords, process_users

        records = UserRecords(directory)
        block = process_users(len(records), int(process_index or 0), int(process_count or 1))
        users = records.read(block)
        column = lambda field: [r[field] for r in users] if field in records.meta["fields"] else None  # noqa: E731
        per_user = {"sequences": column("items"), "ratings": column("ratings"), "timestamps": column("timestamps"),
                    "rating_splits": column("rating_split"), "interaction_splits": column("split"),
                    "user_original_ids": [r["id"] for r in users], "user_offset": block.start,
                    "total_users": len(records)}
    else:
        for needed in (USERS_FILE, INTERACTIONS_FILE):
            if not os.path.isfile(os.path.join(directory, needed)):
                raise NotPreparedError(f"{directory}: incomplete prepared dataset ({needed} missing)")
        with open(os.path.join(directory, USERS_FILE), encoding="utf-8") as f:
            users = json.load(f)
        with np.load(os.path.join(directory, INTERACTIONS_FILE), allow_pickle=False) as arrays:
            offsets = arrays["user_offsets"]
            column = lambda key: _split_flat(arrays[key], offsets) if key in arrays else None  # noqa: E731
            per_user = {"sequences": _split_flat(arrays["items"].astype(np.int32, copy=False), offsets),
                        "ratings": column("ratings"), "timestamps": column("timestamps"),
                        "rating_splits": column("rating_split"), "interaction_splits": column("split"),
                        "user_original_ids": users}
    return PreparedDataset(
        name=meta["name"],
        indexing=meta["indexing"],
        item_ids=items["item_ids"],
        item_titles=items["titles"],
        item_original_ids=items["original_ids"],
        item_attributes=items["attributes"],
        source_format=meta.get("source_format", ""),
        seed=int(meta.get("seed", 0)),
        item_prices=items.get("prices"),
        index_info=meta.get("item_index"),
        split_times=tuple(meta["split_times"]) if meta.get("split_times") else None,
        **per_user,
    )


def _read_catalog(directory: str) -> tuple[dict, dict]:
    """prepared.json and items.json of a prepared directory, with one-line errors for what is missing."""
    meta_path = os.path.join(directory, METADATA_FILE)
    if not os.path.isdir(directory):
        raise NotPreparedError(f"{directory}: not a directory (expected a prepared dataset written by `recjax prepare`)")
    if not os.path.isfile(meta_path):
        raise NotPreparedError(f"{directory}: not a prepared dataset ({METADATA_FILE} missing; write one with `recjax prepare`)")
    with open(meta_path, encoding="utf-8") as f:
        meta = json.load(f)
    if meta.get("format_version") != FORMAT_VERSION:
        raise NotPreparedError(
            f"{meta_path}: format_version {meta.get('format_version')!r}, this recjax reads {FORMAT_VERSION}; re-run `recjax prepare`"
        )
    for needed in (ITEMS_FILE,):
        if not os.path.isfile(os.path.join(directory, needed)):
            raise NotPreparedError(f"{directory}: incomplete prepared dataset ({needed} missing)")
    with open(os.path.join(directory, ITEMS_FILE), encoding="utf-8") as f:
        items = json.load(f)
    return meta, items


def write_prepared_files(dataset: PreparedDataset, directory: str, extra_metadata: dict | None = None) -> None:
    """Write the numpy/JSON files of `dataset` into an existing (temporary) `directory`.

    Callers write into a temporary directory and rename it (see `recjax.data.atomic`).
    """
    lengths = np.array([len(s) for s in dataset.sequences], np.int64)
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    arrays = {
        "user_offsets": offsets,
        "items": np.concatenate(dataset.sequences).astype(np.int32) if dataset.sequences else np.zeros(0, np.int32),
    }
    if dataset.ratings is not None:
        arrays["ratings"] = np.concatenate(dataset.ratings).astype(np.float32)
    if dataset.timestamps is not None:
        arrays["timestamps"] = np.concatenate(dataset.timestamps).astype(np.int64)
    if dataset.rating_splits is not None:
        arrays["rating_split"] = np.concatenate(dataset.rating_splits).astype(np.int8)
    if dataset.interaction_splits is not None:
        arrays["split"] = np.concatenate(dataset.interaction_splits).astype(np.int8)
    np.savez(os.path.join(directory, INTERACTIONS_FILE), **arrays)
    items = {
        "item_ids": list(dataset.item_ids),
        "titles": list(dataset.item_titles),
        "original_ids": list(dataset.item_original_ids),
        "attributes": [list(a) for a in dataset.item_attributes],
    }
    if dataset.item_prices is not None:
        items["prices"] = list(dataset.item_prices)
    with open(os.path.join(directory, ITEMS_FILE), "w", encoding="utf-8") as f:
        json.dump(items, f, ensure_ascii=False)
    with open(os.path.join(directory, USERS_FILE), "w", encoding="utf-8") as f:
        json.dump(list(dataset.user_original_ids), f, ensure_ascii=False)
    meta = {
        "format_version": FORMAT_VERSION,
        "name": dataset.name,
        "source_format": dataset.source_format,
        "indexing": dataset.indexing,
        "seed": dataset.seed,
        "num_users": dataset.num_users,
        "num_items": dataset.num_items,
        "num_interactions": dataset.num_interactions,
        "has_ratings": dataset.ratings is not None,
        "has_timestamps": dataset.timestamps is not None,
        "split": dataset.split_scheme,
        **(extra_metadata or {}),
    }
    if dataset.split_times is not None:
        meta["split_times"] = [int(t) for t in dataset.split_times]
    if dataset.index_info is not None:
        meta["item_index"] = dataset.index_info
    with open(os.path.join(directory, METADATA_FILE), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, ensure_ascii=False)
