"""The reader amazon2018 and amazon2023 share: a category's kept reviews (streamed here by
`recjax.data.review_stream`, or on Apache Beam by `recjax.data.beam_prepare`), its items'
metadata (streamed, kept items only) and the split."""
from __future__ import annotations

import dataclasses
import glob
import os
from typing import Callable

from recjax.data.errors import DataError
from recjax.data.raw import RawDataset
from recjax.data.review_stream import KeptReviews, ReviewFields, meta_lines, read_reviews, to_raw


def find_file(src: str, stem: str, suffixes: tuple[str, ...], folders: tuple[str, ...] = ("",)) -> str | None:
    """The first of stem + suffix in `src` or its `folders` that exists; a remote `src` (gs://,
    s3://) through Beam's file systems (--runner beam)."""
    names = [f"{folder}/{stem}{suffix}" if folder else stem + suffix for folder in folders for suffix in suffixes]
    if "://" in src:
        from recjax.data.beam_prepare import resolve

        return resolve(src, names)
    return next((os.path.join(src, n) for n in names if os.path.isfile(os.path.join(src, n))), None)


def find_category(src: str, category: str | None, suffixes: tuple[str, ...], folders: tuple[str, ...],
                  missing: str, what: str) -> str:
    """`category`, or the one review file's stem in `src` (or its `folders`; metadata files left
    out); `missing` says which files were expected, `what` names the stems in the error for several."""
    if category:
        return category
    if "://" in src:
        raise DataError(f"{src}: name the category with --category (a remote --src is not listed)")
    names = set()
    for folder in folders:
        for suffix in suffixes:
            for path in glob.glob(os.path.join(src, folder, "*" + suffix)):
                name = os.path.basename(path)[: -len(suffix)]
                if not name.startswith("meta_"):
                    names.add(name)
    if len(names) == 1:
        return names.pop()
    if not names:
        raise DataError(f"{src}: missing required file ({missing})")
    raise DataError(f"{src}: several {what} ({', '.join(sorted(names))}); pick one with --category")


def kept_reviews(path: str, fields: ReviewFields, kcore: int, runner: str = "local", pipeline_options: str = "",
                 progress: bool = True) -> KeptReviews:
    """`read_reviews` here, or the same records from Apache Beam pipelines (`runner="beam"`)."""
    if runner == "beam":
        from recjax.data import beam_prepare  # the optional extra

        return beam_prepare.kept_reviews(path, fields, kcore, pipeline_options)
    if runner != "local":
        raise DataError(f"--runner must be local or beam, got {runner!r}")
    return read_reviews(path, fields, kcore, progress)


@dataclasses.dataclass(frozen=True)
class MetaFields:
    """How a release's metadata lines give an item's text, attributes and price."""

    key: str  # the item ID field ("asin", "parent_asin")
    attributes: Callable[[dict], list[str]]
    price: Callable[[object], tuple[float | None, bool]]  # -> (price or None, whether the value was unreadable)
    price_note: str  # the note counting unreadable prices


TITLE_NOTE = "metadata titles that are not a string (kept empty)"


def read_meta(path: str, wanted: set[str], spec: MetaFields, notes: dict[str, int]) -> dict[str, dict]:
    """{item ID: {"title", "attributes", "price"}} of the wanted items; unreadable titles and prices
    are counted in `notes` and left empty / unknown."""
    meta = {}
    notes.setdefault(spec.price_note, 0)
    notes.setdefault(TITLE_NOTE, 0)
    for _, record in meta_lines(path, spec.key, wanted):
        title = record.get("title")
        if title is not None and not isinstance(title, str):
            notes[TITLE_NOTE] += 1
            title = None
        price, unreadable = spec.price(record.get("price"))
        notes[spec.price_note] += unreadable
        meta[record[spec.key]] = {"title": (title or "").strip(), "attributes": spec.attributes(record), "price": price}
    return meta


def read_release(reviews_path: str, meta_path: str, fields: ReviewFields, meta_fields: MetaFields, kcore: int,
                 split_times: tuple[int, int] | None, progress: bool = True, runner: str = "local",
                 pipeline_options: str = "") -> RawDataset:
    """A 2018/2023 category: the kept reviews (here or on Beam), their items' metadata, the split."""
    kept = kept_reviews(reviews_path, fields, kcore, runner, pipeline_options, progress)
    notes: dict[str, int] = {}
    meta = read_meta(meta_path, set(kept.item_ids), meta_fields, notes)
    raw = to_raw(kept, fields, meta, split_times, [reviews_path, meta_path])
    raw.notes.update(notes)
    return raw
