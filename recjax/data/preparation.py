"""raw files -> RawDataset -> documented record policies -> PreparedDataset -> a prepared directory."""
from __future__ import annotations

import dataclasses
import os
import sys

from recjax.data.prepared import PreparedDataset
from recjax.data.raw import RawDataset, drop_repeated_items, k_core, to_prepared

FORMATS = ("amazon2014", "p5", "s3rec", "movielens", "synthetic")
MIN_LOO_LENGTH = 3  # leave-one-out needs a training item, a validation and a test item


@dataclasses.dataclass
class SourceOptions:
    """Options of the format readers (flags of `recjax prepare`)."""

    category: str | None = None  # amazon2014: which reviews_<Category>_5.json.gz
    kcore: int = 5  # amazon2014: the k-core filter (0 disables)
    item_text: str | None = None  # p5 / s3rec: an `ITEM_ID text` file
    s3rec_name: str | None = None  # s3rec: which <Name>.txt
    synthetic: dict = dataclasses.field(default_factory=dict)  # synthetic: generator options


def read_raw(source_format: str, src: str | None, options: SourceOptions | None = None) -> RawDataset:
    """Read the raw files of one format; errors are DataError naming the file and line."""
    from recjax.data.errors import DataError

    options = options or SourceOptions()
    if source_format == "synthetic":
        from recjax.data.synthetic import synthetic_raw

        return synthetic_raw(**options.synthetic)
    if source_format not in FORMATS:
        raise ValueError(f"unknown format {source_format!r} (expected one of {', '.join(FORMATS)})")
    if not src:
        raise DataError(f"--src is required for --format {source_format}")
    if not os.path.exists(src):
        raise DataError(f"{src}: no such file or directory (--src of --format {source_format})")
    if source_format != "movielens" and os.path.isfile(src):
        src = os.path.dirname(os.path.abspath(src))  # a file of the dataset names its directory
    if source_format == "amazon2014":
        from recjax.data.formats.amazon2014 import read_amazon2014

        return read_amazon2014(src, options.category)
    if source_format == "p5":
        from recjax.data.formats.p5 import read_p5

        return read_p5(src, options.item_text)
    if source_format == "s3rec":
        from recjax.data.formats.s3rec import read_s3rec

        return read_s3rec(src, options.s3rec_name, options.item_text)
    from recjax.data.formats.movielens import read_movielens

    return read_movielens(src)


def drop_short_users(raw: RawDataset, min_length: int = MIN_LOO_LENGTH) -> RawDataset:
    """Policy: users with fewer than `min_length` interactions cannot be split leave-one-out and are dropped."""
    keep = [len(s) >= min_length for s in raw.sequences]
    dropped = keep.count(False)
    if dropped:
        pick = lambda xs: [x for x, k in zip(xs, keep) if k]  # noqa: E731
        raw.sequences = pick(raw.sequences)
        raw.user_original_ids = pick(raw.user_original_ids)
        if raw.ratings is not None:
            raw.ratings = pick(raw.ratings)
        if raw.timestamps is not None:
            raw.timestamps = pick(raw.timestamps)
    raw.dropped[f"users with fewer than {min_length} interactions"] = dropped
    return raw


def apply_policies(raw: RawDataset, source_format: str, options: SourceOptions | None = None) -> RawDataset:
    """The record policies in order; DataError when one of them leaves no user."""
    options = options or SourceOptions()
    _require_users(raw, "reading")
    raw = drop_repeated_items(raw)
    if source_format == "amazon2014" and options.kcore > 0:
        raw = k_core(raw, options.kcore, options.kcore)
        _require_users(raw, f"the {options.kcore}-core filter (--kcore)")
    raw = drop_short_users(raw)
    _require_users(raw, f"dropping users with fewer than {MIN_LOO_LENGTH} interactions (leave-one-out needs them)")
    return raw


def _require_users(raw: RawDataset, step: str) -> None:
    """An input the policies empty is refused in one line that says what was filtered away."""
    if raw.sequences:
        return
    from recjax.data.errors import DataError

    source = raw.source_files[0] if raw.source_files else "the input"
    counts = "; ".join(f"{what}: {n:,}" for what, n in raw.dropped.items() if n)
    raise DataError(f"{source}: no user left after {step}" + (f" ({counts})" if counts else "")
                    + "; nothing to prepare")


def build(source_format: str, src: str | None, name: str, indexing: str = "random", seed: int = 0,
          options: SourceOptions | None = None) -> tuple[PreparedDataset, RawDataset]:
    """Raw files -> PreparedDataset (and the RawDataset, for its counts and source files)."""
    raw = apply_policies(read_raw(source_format, src, options), source_format, options)
    return to_prepared(raw, name=name, source_format=source_format, indexing=indexing, seed=seed), raw


def report_policies(raw: RawDataset, stream=None) -> None:
    """Print every count of records dropped by a documented policy (and other notable counts)."""
    for what, count in {**raw.dropped, **raw.notes}.items():
        if count:
            print(f"  {count:,} {what}", file=stream or sys.stdout)
