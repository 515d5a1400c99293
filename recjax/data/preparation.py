"""raw files -> RawDataset -> documented record policies -> PreparedDataset -> a prepared directory."""
from __future__ import annotations

import dataclasses
import os
import sys

from recjax.data.prepared import PreparedDataset
from recjax.data.raw import RawDataset, drop_repeated_items, k_core, to_prepared

FORMATS = ("amazon2014", "amazon2018", "amazon2023", "p5", "s3rec", "movielens", "synthetic")
STREAMING_FORMATS = ("amazon2018", "amazon2023")  # recjax.data.review_stream: bounded memory
SPLITS = ("leave_last_out", "timestamp")
MIN_LOO_LENGTH = 3  # leave-one-out needs a training item, a validation and a test item


@dataclasses.dataclass
class SourceOptions:
    """Options of the format readers (flags of `recjax prepare`)."""

    category: str | None = None  # amazon2014/2018/2023: which category's files
    kcore: int = 5  # amazon2014/2018/2023: the k-core filter (0 disables)
    split: str = "leave_last_out"  # amazon2018/2023: or "timestamp" (absolute cut points)
    split_times: tuple[int, int] | None = None  # the timestamp split's cut points, in the source's time unit
    progress: bool = True  # amazon2018/2023: progress bars over the review files
    runner: str = "local"  # amazon2018/2023: or "beam" (recjax.data.beam_prepare)
    pipeline_options: str = ""  # --runner beam: Beam's pipeline options, e.g. "--runner=DirectRunner"
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
    if options.runner != "local" and source_format not in STREAMING_FORMATS:
        raise DataError(f"--runner {options.runner}: only --format {' / '.join(STREAMING_FORMATS)} run on Beam")
    remote = "://" in src and options.runner == "beam"  # gs://, s3://: checked by the Beam reader
    if not remote and not os.path.exists(src):
        raise DataError(f"{src}: no such file or directory (--src of --format {source_format})")
    if source_format != "movielens" and not remote and os.path.isfile(src):
        src = os.path.dirname(os.path.abspath(src))  # a file of the dataset names its directory
    if options.split != "leave_last_out" and source_format not in STREAMING_FORMATS:
        raise DataError(f"--split {options.split}: only --format {' / '.join(STREAMING_FORMATS)} have a timestamp split "
                        f"(--format {source_format} is split leave-last-out)")
    if source_format == "amazon2014":
        from recjax.data.formats.amazon2014 import read_amazon2014

        return read_amazon2014(src, options.category)
    if source_format == "amazon2018":
        from recjax.data.formats.amazon2018 import read_amazon2018

        return read_amazon2018(src, options.category, options.kcore, options.split, options.split_times, options.progress,
                               options.runner, options.pipeline_options)
    if source_format == "amazon2023":
        from recjax.data.formats.amazon2023 import read_amazon2023

        return read_amazon2023(src, options.category, options.kcore, options.split, options.split_times, options.progress,
                               options.runner, options.pipeline_options)
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
        raw.keep_users(keep)
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
    if raw.interaction_splits is not None:  # a timestamp split evaluates every user's later interactions
        return raw
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
