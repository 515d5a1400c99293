"""Review files too large for a Python object per review (the Amazon 2018 and 2023 releases: tens
of millions of reviews in a category), read in two streaming passes with bounded memory.

  pass 1    each review -> four numbers: 64-bit hashes of its user and item IDs, its time and its
            rating (28 bytes a review; no string, dict or review text is kept)
  policies  on those arrays: a repeated (user, item) pair keeps its earliest review (equal times:
            the lower rating), then the k-core filter
  pass 2    the ID strings of the kept users and items only (found by hash; a hash shared by two
            IDs is refused, never merged silently)

Peak memory is 28 bytes a review for pass 1's columns and a few times that while sorting them, plus
the kept users' and items' strings: it does not depend on the length of the review text, and
dropped users never hold a string. The dataset depends on no file order: users are ordered by
their ID, a user's reviews by (time, item ID), so any runner (`recjax.data.beam_prepare`) that
applies the same rules writes the same dataset.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from array import array
from typing import Iterator

import numpy as np

from recjax.data.errors import DataError, at, preview
from recjax.data.raw import RawDataset, kcore_mask
from recjax.data.textio import iter_lines, json_object

PROGRESS_EVERY = 1 << 16  # lines between progress-bar updates (a bar update costs ~1 us a line otherwise)
DUPLICATES = "repeated (user, item) records, earliest kept"


@dataclasses.dataclass(frozen=True)
class ReviewFields:
    """Where a review line keeps its four values, and the unit of its time."""

    user: str
    item: str
    rating: str
    time: str
    time_per_second: int  # 1: unix seconds (2018); 1000: milliseconds (2023)


@dataclasses.dataclass
class ReviewColumns:
    """One entry per review (or per kept review after the policies)."""

    user: np.ndarray  # int64 [n] hash of the user ID
    item: np.ndarray  # int64 [n] hash of the item ID
    time: np.ndarray  # int64 [n] in the source's unit
    rating: np.ndarray  # float32 [n]

    def take(self, index: np.ndarray) -> "ReviewColumns":
        return ReviewColumns(self.user[index], self.item[index], self.time[index], self.rating[index])

    def __len__(self) -> int:
        return len(self.user)


def review_values(path: str, lineno: int, record: dict, fields: ReviewFields) -> tuple[str, str, int, float]:
    """(user, item, time, rating) of one review, or DataError naming the field and what it holds."""
    user, item, time, rating = (record.get(fields.user), record.get(fields.item), record.get(fields.time),
                                record.get(fields.rating))
    if type(user) is not str or type(item) is not str or not user or not item \
            or type(time) is not int or type(rating) not in (int, float) or not math.isfinite(rating):
        for key, ok, what in ((fields.user, type(user) is str and user, "a non-empty string"),
                              (fields.item, type(item) is str and item, "a non-empty string"),
                              (fields.time, type(time) is int, "an integer"),
                              (fields.rating, type(rating) in (int, float) and math.isfinite(rating), "a number")):
            if not ok:
                got = "missing" if key not in record else repr(record[key])
                raise at(path, lineno, f"expected field {key!r} ({what}), got {got}")
    return user, item, time, float(rating)


def _progress(desc: str):
    from recjax.progress import bar

    return bar(desc=desc, unit=" lines", unit_scale=True)


def scan(path: str, fields: ReviewFields, progress: bool = True) -> ReviewColumns:
    """Pass 1: every review of `path` as four numbers (see the module docstring)."""
    users, items, times, ratings = array("q"), array("q"), array("q"), array("f")
    add_user, add_item, add_time, add_rating = users.append, items.append, times.append, ratings.append
    shown = _progress(f"reading {path}") if progress else None
    for lineno, line in iter_lines(path):
        user, item, time, rating = review_values(path, lineno, json_object(path, lineno, line), fields)
        add_user(hash(user))
        add_item(hash(item))
        add_time(time)
        add_rating(rating)
        if shown is not None and not lineno % PROGRESS_EVERY:
            shown.update(lineno - shown.n)
    if shown is not None:
        shown.close()
    return ReviewColumns(*(np.frombuffer(a, dtype) for a, dtype in
                           ((users, np.int64), (items, np.int64), (times, np.int64), (ratings, np.float32))))


def earliest_of_pairs(columns: ReviewColumns) -> np.ndarray:
    """Indices of the reviews kept when a (user, item) pair repeats: its earliest, equal times
    broken by the lower rating (a rule that needs no file order)."""
    order = np.lexsort((columns.rating, columns.time, columns.item, columns.user))  # last key is primary
    user, item = columns.user[order], columns.item[order]
    first = np.ones(len(order), bool)
    first[1:] = (user[1:] != user[:-1]) | (item[1:] != item[:-1])
    return np.sort(order[first])


def apply_policies(columns: ReviewColumns, kcore: int, dropped: dict[str, int]) -> ReviewColumns:
    """Repeated pairs, then the k-core (0: off), as the Amazon 2023 benchmark's scripts order them."""
    keep = earliest_of_pairs(columns)
    dropped[DUPLICATES] = len(columns) - len(keep)
    columns = columns.take(keep)
    if kcore > 0:
        _, users = np.unique(columns.user, return_inverse=True)
        _, items = np.unique(columns.item, return_inverse=True)
        alive = kcore_mask(users.ravel(), items.ravel(), kcore, kcore)
        dropped[f"records removed by the {kcore}/{kcore}-core filter"] = len(columns) - int(alive.sum())
        dropped[f"users removed by the {kcore}/{kcore}-core filter"] = len(np.unique(users)) - len(np.unique(users[alive]))
        columns = columns.take(np.flatnonzero(alive))
    return columns


def _string_field(field: str) -> re.Pattern:
    # A JSON string without escapes; an ID with escapes falls back to json.loads. Inside review text
    # a key would be written \"field\", which this does not match.
    return re.compile(r'"%s"\s*:\s*"([^"\\]*)"' % re.escape(field))


def recover_ids(path: str, fields: ReviewFields, user_hashes: np.ndarray, item_hashes: np.ndarray,
                progress: bool = True) -> tuple[dict[int, str], dict[int, str]]:
    """Pass 2: {hash: ID} for the kept users' and items' hashes; stops once all are found."""
    wanted_users, wanted_items = set(user_hashes.tolist()), set(item_hashes.tolist())
    users: dict[int, str] = {}
    items: dict[int, str] = {}
    user_re, item_re = _string_field(fields.user), _string_field(fields.item)
    shown = _progress(f"IDs of the kept users and items, {path}") if progress else None
    for lineno, line in iter_lines(path):
        mu, mi = user_re.search(line), item_re.search(line)
        if mu is not None and mi is not None:
            user, item = mu.group(1), mi.group(1)
        else:
            user, item, _, _ = review_values(path, lineno, json_object(path, lineno, line), fields)
        for value, wanted, found, what in ((user, wanted_users, users, "user"), (item, wanted_items, items, "item")):
            key = hash(value)
            if key in wanted and found.setdefault(key, value) != value:
                raise at(path, lineno, f"{what} IDs {found[key]!r} and {value!r} share one 64-bit hash; run again "
                                       "(Python seeds its string hash per process, so a rerun separates them)")
        if shown is not None and not lineno % PROGRESS_EVERY:
            shown.update(lineno - shown.n)
        if len(users) == len(wanted_users) and len(items) == len(wanted_items):
            break
    if shown is not None:
        shown.close()
    return users, items


def split_labels(times: np.ndarray, cuts: tuple[int, int]) -> np.ndarray:
    """int8 [n]: 0 train (time < cuts[0]), 1 valid (cuts[0] <= time < cuts[1]), 2 test (time >= cuts[1])."""
    return np.searchsorted(np.asarray(cuts, np.int64), times, side="right").astype(np.int8)


@dataclasses.dataclass
class KeptReviews:
    """The reviews after the policies, in the dataset's order, with the kept users' and items' IDs."""

    user_ids: list[str]  # sorted
    item_ids: list[str]  # sorted; `items` index this list
    offsets: np.ndarray  # int64 [users + 1]: user u owns records [offsets[u], offsets[u+1])
    items: np.ndarray  # int32 [n]
    time: np.ndarray  # int64 [n] in the source's unit
    rating: np.ndarray  # float32 [n]
    dropped: dict[str, int]
    reviews_read: int = 0

    def per_user(self, values: np.ndarray) -> list[np.ndarray]:
        return np.split(values, self.offsets[1:-1])


def order_kept(columns: ReviewColumns, user_of: dict[int, str], item_of: dict[int, str],
               dropped: dict[str, int]) -> KeptReviews:
    """Users by ID, a user's reviews by (time, item ID), items numbered in ID order."""
    user_hashes, user_code = np.unique(columns.user, return_inverse=True)
    item_hashes, item_code = np.unique(columns.item, return_inverse=True)
    user_ids = [user_of[h] for h in user_hashes.tolist()]
    item_ids = [item_of[h] for h in item_hashes.tolist()]
    user_rank = np.argsort(np.argsort(np.array(user_ids, dtype=object), kind="stable"))
    item_rank = np.argsort(np.argsort(np.array(item_ids, dtype=object), kind="stable"))
    users, items = user_rank[user_code.ravel()], item_rank[item_code.ravel()]
    order = np.lexsort((items, columns.time, users))
    counts = np.bincount(users, minlength=len(user_ids))
    offsets = np.zeros(len(user_ids) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return KeptReviews(user_ids=sorted(user_ids), item_ids=sorted(item_ids), offsets=offsets,
                       items=items[order].astype(np.int32), time=columns.time[order],
                       rating=columns.rating[order], dropped=dropped)


def read_reviews(path: str, fields: ReviewFields, kcore: int, progress: bool = True) -> KeptReviews:
    """Both passes and the policies: the kept reviews of `path`, ready for `to_raw`."""
    dropped: dict[str, int] = {}
    columns = scan(path, fields, progress)
    read = len(columns)
    columns = apply_policies(columns, kcore, dropped)
    if not len(columns):
        counts = "; ".join(f"{what}: {n:,}" for what, n in dropped.items() if n)
        raise DataError(f"{path}: no review left after the record policies ({counts}); nothing to prepare")
    user_of, item_of = recover_ids(path, fields, np.unique(columns.user), np.unique(columns.item), progress)
    kept = order_kept(columns, user_of, item_of, dropped)
    kept.reviews_read = read
    return kept


def to_raw(kept: KeptReviews, fields: ReviewFields, meta: dict[str, dict], split_times: tuple[int, int] | None,
           source_files: list[str]) -> RawDataset:
    """KeptReviews + item metadata ({item ID: {"title", "attributes", "price"}}) -> RawDataset;
    with `split_times` (the source's time unit), each interaction's timestamp split label."""
    missing = {"title": "", "attributes": [], "price": None}
    rows = [meta.get(i, missing) for i in kept.item_ids]
    raw = RawDataset(
        item_original_ids=list(kept.item_ids),
        item_titles=[r["title"] for r in rows],
        item_attributes=[r["attributes"] for r in rows],
        user_original_ids=list(kept.user_ids),
        sequences=kept.per_user(kept.items),
        ratings=kept.per_user(kept.rating),
        timestamps=kept.per_user(kept.time // fields.time_per_second),
        item_prices=[r["price"] for r in rows],
        interaction_splits=kept.per_user(split_labels(kept.time, split_times)) if split_times else None,
        split_times=tuple(split_times) if split_times else None,
        source_files=source_files,
    )
    raw.dropped.update(kept.dropped)
    raw.notes["reviews read"] = kept.reviews_read
    raw.notes["reviewed items without a metadata line"] = sum(1 for i in kept.item_ids if i not in meta)
    raw.notes["items without a title"] = sum(1 for r in rows if not r["title"])
    return raw


def meta_lines(path: str, key: str, wanted: set[str]) -> Iterator[tuple[int, dict]]:
    """(line number, record) of the metadata lines whose `key` is in `wanted`, the first line of
    each (the 2018 files repeat some); other lines are skipped unparsed (a regex finds the key).
    A path with a scheme (gs://, s3://) is read through Beam's file systems."""
    key_re = _string_field(key)
    seen: set[str] = set()
    open_binary = None
    if "://" in path:
        from apache_beam.io.filesystems import FileSystems

        open_binary = lambda: FileSystems.open(path)  # noqa: E731 (decompresses .gz by its name)
    for lineno, line in iter_lines(path, open_binary=open_binary):
        found = key_re.search(line)
        if found is not None and (found.group(1) not in wanted or found.group(1) in seen):
            continue
        record = json_object(path, lineno, line)
        value = record.get(key)
        if not isinstance(value, str):
            raise at(path, lineno, f"expected field {key!r} (a string), got {'missing' if key not in record else repr(value)}")
        if value in wanted and value not in seen:
            seen.add(value)
            yield lineno, record
