"""Amazon review data, 2018 release (Ni, Li and McAuley, EMNLP 2019): `<Category>.json.gz` (all
reviews) or `<Category>_5.json.gz` (the 5-core), with `meta_<Category>.json.gz`; gzipped or not.
LC-Rec, LETTER and MiniOneRec take their datasets (Instruments, Arts, Games, Industrial, Office)
from this release.

- reviews: one JSON object per line; recjax reads `reviewerID`, `asin`, `overall` (1-5 stars) and
  `unixReviewTime` (day resolution, seconds).
- metadata: one JSON object per line, keyed by `asin`; recjax reads `title`, `brand`, `category` (a flat list whose first entry is
  the root, e.g. "Industrial & Scientific") and `price` (a string such as "$12.99"; ranges, ""
  and other text are counted and left unknown). Some `asin`s have several lines: the first counts.

Item attributes follow amazon2014: the brand, then the categories below the root. Records go
through the same policies and streaming reader as amazon2023 (`recjax.data.review_stream`).
"""
from __future__ import annotations

import re

from recjax.data import review_stream
from recjax.data.formats import amazon_reviews
from recjax.data.errors import DataError
from recjax.data.raw import RawDataset

FIELDS = review_stream.ReviewFields(user="reviewerID", item="asin", rating="overall", time="unixReviewTime",
                                    time_per_second=1)
_SUFFIXES = (".json.gz", ".json", ".jsonl.gz", ".jsonl")
_PRICE = re.compile(r"^\$\s*([0-9][0-9,]*(?:\.[0-9]+)?)$")


def find_category(src: str, category: str | None) -> str:
    """The reviews file's stem: `Office_Products` (all reviews) or `Office_Products_5` (5-core)."""
    return amazon_reviews.find_category(
        src, category, _SUFFIXES, ("",), "expected <Category>.json.gz or <Category>_5.json.gz and "
        "meta_<Category>.json.gz for --format amazon2018", "review files")


def item_attributes(record: dict) -> list[str]:
    out: list[str] = []
    brand = record.get("brand")
    if isinstance(brand, str) and brand.strip():
        out.append(brand.strip())
    categories = record.get("category") or []
    for value in list(categories)[1:] if isinstance(categories, list) else []:
        if isinstance(value, str) and value.strip() and value.strip() not in out:
            out.append(value.strip())
    return out


def price(value) -> tuple[float | None, bool]:
    """(the price, whether it was unreadable): "$1,299.00" -> 1299.0; "" and null are unknown;
    ranges ("$5.00 - $9.00") and other text are unknown and counted."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), False
    match = _PRICE.match(value.strip()) if isinstance(value, str) else None
    if match:
        return float(match.group(1).replace(",", "")), False
    return None, value not in (None, "")


META = amazon_reviews.MetaFields(key="asin", attributes=item_attributes, price=price,
                                price_note="metadata prices that are not one dollar amount (kept unknown)")


def read_amazon2018(src: str, category: str | None = None, kcore: int = 5, split: str = "leave_last_out",
                    split_times: tuple[int, int] | None = None, progress: bool = True,
                    runner: str = "local", pipeline_options: str = "") -> RawDataset:
    category = find_category(src, category)
    reviews_path = amazon_reviews.find_file(src, category, _SUFFIXES)
    base = category[:-2] if category.endswith("_5") else category
    meta_path = amazon_reviews.find_file(src, "meta_" + base, _SUFFIXES)
    if reviews_path is None:
        raise DataError(f"{src}: missing required file {category}.json.gz (the reviews of --format amazon2018)")
    if meta_path is None:
        raise DataError(f"{src}: missing required file meta_{base}.json.gz (item metadata of --format amazon2018)")
    if split == "timestamp" and not split_times:
        raise DataError("--split timestamp with --format amazon2018 needs --split-times VALID,TEST (unix seconds); "
                        "the release has no published cut points")
    return amazon_reviews.read_release(reviews_path, meta_path, FIELDS, META, kcore,
                                      split_times if split == "timestamp" else None, progress, runner, pipeline_options)
