"""Amazon review data, 2014 release (McAuley et al.): `reviews_<Category>_5.json.gz` and
`meta_<Category>.json.gz`.

- reviews: one JSON object per line; recjax reads reviewerID, asin, overall (1-5 stars) and
  unixReviewTime (day resolution);
- meta: one Python-literal dict per line (single quotes), parsed with `ast.literal_eval`, never
  `eval`; recjax reads title, brand, categories and price. Only lines whose ASIN is reviewed are
  parsed (a cheap regex finds the ASIN first), which keeps the full-category meta files fast.

Item attributes follow S3-Rec: the brand, then every category of every category path except the
root (the root is the domain itself, e.g. "Beauty"), without repeats.
"""
from __future__ import annotations

import ast
import glob
import json
import math
import os
import re

import numpy as np

from recjax.data.errors import DataError, at, preview
from recjax.data.raw import RawDataset, group_by_user
from recjax.data.textio import iter_lines, json_object

REVIEW_FIELDS = {"reviewerID": str, "asin": str, "overall": (int, float), "unixReviewTime": int}
_ASIN_IN_META = re.compile(r"""['"]asin['"]\s*:\s*['"]([^'"]+)['"]""")


def find_category(src: str, category: str | None) -> str:
    if category:
        return category
    found = sorted(os.path.basename(p)[len("reviews_"): -len("_5.json.gz")] for p in glob.glob(os.path.join(src, "reviews_*_5.json.gz")))
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataError(f"{src}: missing required file (expected reviews_<Category>_5.json.gz and meta_<Category>.json.gz for --format amazon2014)")
    raise DataError(f"{src}: several categories ({', '.join(found)}); pick one with --category")


def read_reviews(path: str) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """-> (reviewerID, asin, rating float32, unixReviewTime int64) per review, in file order."""
    users, asins, ratings, times = [], [], [], []
    for lineno, line in iter_lines(path):
        record = json_object(path, lineno, line)
        for key, kind in REVIEW_FIELDS.items():
            if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool):
                got = "missing" if key not in record else f"{record[key]!r}"
                raise at(path, lineno, f"expected field {key!r} ({'number' if key == 'overall' else kind.__name__}), got {got}")
        users.append(record["reviewerID"])
        asins.append(record["asin"])
        ratings.append(record["overall"])
        times.append(record["unixReviewTime"])
    return users, asins, np.asarray(ratings, np.float32), np.asarray(times, np.int64)


def _parse_meta_line(path: str, lineno: int, line: str) -> dict:
    try:
        record = ast.literal_eval(line)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        try:  # a few re-releases of the meta files are strict JSON
            record = json.loads(line)
        except json.JSONDecodeError:
            raise at(path, lineno, f"expected a Python-literal dict per line, got {preview(line)}") from None
    if not isinstance(record, dict):
        raise at(path, lineno, f"expected a Python-literal dict per line, got {preview(line)}")
    return record


def item_attributes(record: dict) -> list[str]:
    out: list[str] = []
    brand = record.get("brand")
    if isinstance(brand, str) and brand.strip():
        out.append(brand.strip())
    for path in record.get("categories") or []:
        for category in list(path)[1:]:
            if isinstance(category, str) and category.strip() and category.strip() not in out:
                out.append(category.strip())
    return out


def read_meta(path: str, wanted: set[str]) -> dict[str, dict]:
    """-> {asin: {"title", "attributes", "price"}} for the ASINs in `wanted`."""
    meta: dict[str, dict] = {}
    for lineno, line in iter_lines(path):
        found = _ASIN_IN_META.search(line)
        if found is None:
            raise at(path, lineno, f"expected a dict with an 'asin' key, got {preview(line)}")
        if found.group(1) not in wanted:
            continue
        record = _parse_meta_line(path, lineno, line)
        asin = record.get("asin")
        price = record.get("price")
        meta[asin] = {
            "title": str(record.get("title") or "").strip(),
            "attributes": item_attributes(record),
            "price": float(price) if isinstance(price, (int, float)) and math.isfinite(price) else None,
        }
    return meta


def read_amazon2014(src: str, category: str | None = None) -> RawDataset:
    category = find_category(src, category)
    reviews_path = os.path.join(src, f"reviews_{category}_5.json.gz")
    meta_path = os.path.join(src, f"meta_{category}.json.gz")
    for path, what in ((reviews_path, "the 5-core reviews"), (meta_path, "item metadata: titles, brands, categories")):
        if not os.path.isfile(path):
            raise DataError(f"{path}: missing required file ({what} of --format amazon2014, category {category})")
    users, asins, ratings, times = read_reviews(reviews_path)
    catalog: dict[str, int] = {}
    item_index = np.fromiter((catalog.setdefault(a, len(catalog)) for a in asins), np.int32, len(asins))
    user_ids, sequences, per_user_times, per_user_ratings = group_by_user(users, item_index, times, ratings)
    item_asins = list(catalog)
    meta = read_meta(meta_path, set(item_asins))
    missing = {"title": "", "attributes": [], "price": None}
    rows = [meta.get(a, missing) for a in item_asins]
    raw = RawDataset(
        item_original_ids=item_asins,
        item_titles=[r["title"] for r in rows],
        item_attributes=[r["attributes"] for r in rows],
        user_original_ids=user_ids,
        sequences=sequences,
        ratings=per_user_ratings,
        timestamps=per_user_times,
        item_prices=[r["price"] for r in rows],
        source_files=[reviews_path, meta_path],
    )
    raw.notes["reviewed items without a meta line"] = sum(1 for a in item_asins if a not in meta)
    raw.notes["items without a title"] = sum(1 for r in rows if not r["title"])
    return raw
