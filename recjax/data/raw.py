"""What a format reader produces (`RawDataset`), the documented record policies (time order,
duplicates, k-core) and the step that turns it into a `PreparedDataset` (item indexing, splits).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from recjax.data.prepared import PreparedDataset
from recjax.items.schemes import NUMERIC_SCHEMES as INDEXINGS, numeric_ids


@dataclasses.dataclass
class RawDataset:
    """Items and per-user interactions in the reader's own item order (indices into the catalog)."""

    item_original_ids: list[str]
    item_titles: list[str]
    item_attributes: list[list[str]]
    user_original_ids: list[str]
    sequences: list[np.ndarray]  # per user: int32 catalog indices, time-ordered
    ratings: list[np.ndarray] | None = None  # per user: float32
    timestamps: list[np.ndarray] | None = None  # per user: int64 unix seconds
    # True when the catalog order already is P5's sequential numbering (the P5 / S3-Rec files),
    # so `sequential` indexing keeps the file's own IDs.
    catalog_is_sequential: bool = False
    item_prices: list[float | None] | None = None
    # per user: int8 0 train / 1 valid / 2 test of a timestamp split (`split_times`); None under
    # leave-last-out, where the splits follow from the sequences themselves
    interaction_splits: list[np.ndarray] | None = None
    split_times: tuple[int, int] | None = None  # the timestamp split's cut points, in the source's unit
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)  # policy -> records dropped
    notes: dict[str, int] = dataclasses.field(default_factory=dict)  # other counts worth printing
    source_files: list[str] = dataclasses.field(default_factory=list)

    def per_user_fields(self) -> list[str]:
        """Names of the per-user arrays aligned with `sequences` (filtered together)."""
        return [name for name in ("sequences", "ratings", "timestamps", "interaction_splits")
                if getattr(self, name) is not None]

    def keep_users(self, keep: list[bool]) -> None:
        """Drop the users whose `keep` is False, from every per-user field."""
        for name in self.per_user_fields() + ["user_original_ids"]:
            setattr(self, name, [x for x, k in zip(getattr(self, name), keep) if k])


def group_by_user(
    user_keys: list[str],
    item_index: np.ndarray,  # int32 [records]
    timestamps: np.ndarray | None,  # int64 [records]
    ratings: np.ndarray | None,  # float32 [records]
) -> tuple[list[str], list[np.ndarray], list[np.ndarray] | None, list[np.ndarray] | None]:
    """Flat records -> per-user arrays, users in order of first appearance, each user's records
    sorted by timestamp; ties keep file order (a stable sort, as P5 / S3-Rec preprocessing does)."""
    codes = {}
    user_code = np.fromiter((codes.setdefault(k, len(codes)) for k in user_keys), np.int64, len(user_keys))
    time_key = timestamps if timestamps is not None else np.zeros(len(user_code), np.int64)
    order = np.lexsort((np.arange(len(user_code)), time_key, user_code))  # last key is primary
    counts = np.bincount(user_code, minlength=len(codes))
    bounds = np.cumsum(counts)[:-1]
    sequences = np.split(item_index[order].astype(np.int32), bounds)
    per_user_ts = np.split(timestamps[order], bounds) if timestamps is not None else None
    per_user_rt = np.split(ratings[order].astype(np.float32), bounds) if ratings is not None else None
    return list(codes), sequences, per_user_ts, per_user_rt


def drop_repeated_items(raw: RawDataset) -> RawDataset:
    """Policy: a user's repeated interaction with the same item keeps only the earliest one
    (leave-one-out on a repeated item is ill-defined). The count dropped is recorded."""
    dropped = 0
    for u, seq in enumerate(raw.sequences):
        _, first = np.unique(seq, return_index=True)
        if len(first) == len(seq):
            continue
        keep = np.sort(first)
        dropped += len(seq) - len(keep)
        for name in raw.per_user_fields():
            getattr(raw, name)[u] = getattr(raw, name)[u][keep]
    key = "repeated (user, item) records, earliest kept"
    raw.dropped[key] = raw.dropped.get(key, 0) + dropped  # a streaming reader may have counted some
    return raw


def kcore_mask(users: np.ndarray, items: np.ndarray, min_user: int, min_item: int) -> np.ndarray:
    """bool [records]: the records of the (min_user, min_item)-core of the user-item graph whose
    edges are (users[r], items[r]) (dense codes): records of users with < min_user and items with
    < min_item records are dropped, iterated until both hold (P5 / S3-Rec's 5-core filter)."""
    alive = np.ones(len(items), bool)
    num_users = int(users.max()) + 1 if len(users) else 0
    num_items = int(items.max()) + 1 if len(items) else 0
    while True:
        item_count = np.bincount(items[alive], minlength=num_items)
        alive_next = alive & (item_count[items] >= min_item)
        user_count = np.bincount(users[alive_next], minlength=num_users)
        alive_next &= user_count[users] >= min_user
        if np.array_equal(alive_next, alive):
            return alive
        alive = alive_next


def k_core(raw: RawDataset, min_user: int, min_item: int) -> RawDataset:
    """Policy: `kcore_mask` on the dataset's interactions. Users and interactions dropped are recorded."""
    lengths = np.array([len(s) for s in raw.sequences], np.int64)
    owner = np.repeat(np.arange(len(raw.sequences)), lengths)
    items = np.concatenate(raw.sequences) if raw.sequences else np.zeros(0, np.int32)
    alive = kcore_mask(owner, items, min_user, min_item)
    alive_users = np.bincount(owner[alive], minlength=len(raw.sequences)) > 0
    keep_split = np.split(alive, np.cumsum(lengths)[:-1]) if len(lengths) else []
    before_users, before_records = len(raw.sequences), len(items)
    for name in raw.per_user_fields():
        setattr(raw, name, [a[k] for a, k in zip(getattr(raw, name), keep_split)])
    raw.keep_users(alive_users.tolist())
    raw.dropped[f"records removed by the {min_user}/{min_item}-core filter"] = before_records - int(alive.sum())
    raw.dropped[f"users removed by the {min_user}/{min_item}-core filter"] = before_users - len(raw.sequences)
    return raw


def sequential_order(raw: RawDataset) -> np.ndarray:
    """Catalog indices in P5's sequential numbering: order of first appearance walking the users in
    order through their time-ordered sequences. Items never interacted with are left out."""
    if raw.catalog_is_sequential:
        return np.arange(len(raw.item_original_ids))
    flat = np.concatenate(raw.sequences)
    _, first = np.unique(flat, return_index=True)
    return flat[np.sort(first)]


def rating_split_labels(num_records: int, seed: int) -> np.ndarray:
    """P5's split of rating records: a seeded shuffle, first 80% train (0), next 10% valid (1), rest test (2)."""
    labels = np.full(num_records, 2, np.int8)
    order = np.random.default_rng([seed, 80_10_10]).permutation(num_records)
    n_train, n_valid = int(0.8 * num_records), int(0.1 * num_records)
    labels[order[:n_train]] = 0
    labels[order[n_train:n_train + n_valid]] = 1
    return labels


def to_prepared(raw: RawDataset, name: str, source_format: str, indexing: str = "random", seed: int = 0) -> PreparedDataset:
    """Renumber the catalog into P5's sequential order, then give items their ID text:
    `sequential`: item i is written "i+1" (P5's IDs, which leak: see recjax/data/README.md);
    `random`: a seeded permutation of "1".."N" (the default)."""
    if indexing not in INDEXINGS:
        raise ValueError(f"indexing must be one of {INDEXINGS}, got {indexing!r}")
    short = [u for u, s in zip(raw.user_original_ids, raw.sequences) if len(s) < 3]
    if short and raw.interaction_splits is None:  # a timestamp split has no per-user minimum
        raise ValueError(f"{len(short)} users have fewer than 3 interactions (e.g. user {short[0]!r}); leave-one-out needs >= 3")
    order = sequential_order(raw)  # new index -> old index
    new_of_old = np.full(len(raw.item_original_ids), -1, np.int64)
    new_of_old[order] = np.arange(len(order))
    sequences = [new_of_old[s].astype(np.int32) for s in raw.sequences]
    item_ids = numeric_ids(len(order), indexing, seed)
    rating_splits = None
    if raw.ratings is not None:
        lengths = [len(s) for s in sequences]
        rating_splits = np.split(rating_split_labels(sum(lengths), seed), np.cumsum(lengths)[:-1])
    return PreparedDataset(
        name=name,
        indexing=indexing,
        item_ids=item_ids,
        item_titles=[raw.item_titles[o] for o in order],
        item_original_ids=[raw.item_original_ids[o] for o in order],
        item_attributes=[list(raw.item_attributes[o]) for o in order],
        item_prices=[raw.item_prices[o] for o in order] if raw.item_prices is not None else None,
        sequences=sequences,
        ratings=raw.ratings,
        timestamps=raw.timestamps,
        user_original_ids=list(raw.user_original_ids),
        rating_splits=rating_splits,
        source_format=source_format,
        seed=seed,
        interaction_splits=raw.interaction_splits,
        split_times=raw.split_times,
    )
