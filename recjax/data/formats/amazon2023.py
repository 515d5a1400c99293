"""Amazon Reviews 2023 (Hou et al. 2024, McAuley Lab): `<Category>.jsonl` and `meta_<Category>.jsonl`,
gzipped or not, side by side in --src or in the release's `review_categories/` and
`meta_categories/` folders.

- reviews: one JSON object per line; recjax reads `user_id`, `parent_asin` (the item: variants of a
  product share it, as the benchmark's own scripts count items), `rating` and `timestamp`
  (milliseconds). Review text, images and votes are never kept.
- metadata: one JSON object per line keyed by `parent_asin`; recjax reads `title` (the item's
  text), `store` and `categories` (its attributes, the store first, as amazon2014's brand) and
  `price`. `features`, `description` and `details` are left out of the item text on purpose: they
  are long marketing paragraphs that would fill the prompts and the TF-IDF of
  `recjax index --embeddings text`. A price that is not a number (the release has strings such as
  "—" and nulls) is counted and left unknown.

The benchmark's conventions are the defaults: duplicates keep the earliest review, the 5-core
(`--kcore 5`, or 0), and either leave-last-out (`--split leave_last_out`) or the absolute
timestamp split at the benchmark's cut points (`--split timestamp`, `TIMESTAMP_CUTS`).
"""
from __future__ import annotations

import math

from recjax.data import review_stream
from recjax.data.formats import amazon_reviews
from recjax.data.errors import DataError
from recjax.data.raw import RawDataset

FIELDS = review_stream.ReviewFields(user="user_id", item="parent_asin", rating="rating", time="timestamp",
                                    time_per_second=1000)
# The benchmark's absolute cut points (ms): valid from 2021-08-11, test from 2022-07-15
# (AmazonReviews2023 benchmark_scripts/timestamp_split.py).
TIMESTAMP_CUTS = (1628643414042, 1658002729837)
_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")


def find_category(src: str, category: str | None) -> str:
    return amazon_reviews.find_category(
        src, category, _SUFFIXES, ("", "review_categories"), "expected <Category>.jsonl[.gz] and "
        "meta_<Category>.jsonl[.gz] for --format amazon2023", "categories")


def item_attributes(record: dict) -> list[str]:
    out: list[str] = []
    values = [record.get("store")] + list(record.get("categories") or [])
    for value in values:
        if isinstance(value, str) and value.strip() and value.strip() not in out:
            out.append(value.strip())
    return out


def price(value) -> tuple[float | None, bool]:
    """(the price, whether it was unreadable): numbers are prices; null is unknown; strings such
    as "—" are unknown and counted."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value), False
    return None, value is not None


META = amazon_reviews.MetaFields(key="parent_asin", attributes=item_attributes, price=price,
                                price_note="metadata prices that are not a number (kept unknown)")


def read_amazon2023(src: str, category: str | None = None, kcore: int = 5, split: str = "leave_last_out",
                    split_times: tuple[int, int] | None = None, progress: bool = True,
                    runner: str = "local", pipeline_options: str = "") -> RawDataset:
    category = find_category(src, category)
    reviews_path = amazon_reviews.find_file(src, category, _SUFFIXES, ("", "review_categories"))
    meta_path = amazon_reviews.find_file(src, "meta_" + category, _SUFFIXES, ("", "meta_categories"))
    if reviews_path is None:
        raise DataError(f"{src}: missing required file {category}.jsonl[.gz] (the reviews of --format amazon2023)")
    if meta_path is None:
        raise DataError(f"{src}: missing required file meta_{category}.jsonl[.gz] (item metadata of --format amazon2023)")
    cuts = (split_times or TIMESTAMP_CUTS) if split == "timestamp" else None
    return amazon_reviews.read_release(reviews_path, meta_path, FIELDS, META, kcore, cuts, progress, runner,
                                      pipeline_options)
