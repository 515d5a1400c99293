"""Generate review and metadata files in the exact published formats of the Amazon 2018 and 2023
releases (field names, types, field order, gzip), for tests and for the preparation benchmark: no
2018/2023 file is in ../shared/data and nothing here downloads them.

What real files have and the generated ones reproduce: heavy-tailed user and item activity (most
users review once or twice, so the 5-core keeps a small part), timestamps out of order within a
user, repeated (user, item) reviews, items reviewed but missing from the metadata, metadata lines
for items nobody reviewed, 2018's repeated metadata lines, prices of mixed type (2023: numbers,
nulls and strings such as "—"; 2018: "$12.99", ranges and ""), and review text of realistic length.

    python benchmarks/generate_amazon_reviews.py --release 2023 --reviews 20000000 --out /tmp/az23
    python benchmarks/generate_amazon_reviews.py --release 2018 --reviews 200000 --out /tmp/az18 --category Office_Products
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time

import numpy as np

WORDS = ("great product works well would buy again love this the quality is nice but smaller than expected "
         "arrived quickly packaging was damaged smells amazing not worth the price my daughter uses it every day "
         "easy to install sturdy cheap plastic broke after a week five stars highly recommend color as shown").split()
CATEGORIES = ["Office Products", "Office & School Supplies", "Writing & Correction Supplies", "Pens & Refills",
              "Paper", "Desk Accessories", "Labels", "Industrial Electrical", "Hand Tools", "Lab Supplies"]
MAIN_CATEGORY = "Office Products"


def _texts(rng: np.random.Generator, n: int, low: int, high: int) -> list[str]:
    """n review texts of low..high words (2023's reviews average about 50 words)."""
    lengths = rng.integers(low, high, n)
    return [" ".join(rng.choice(WORDS, k)).capitalize() + "." for k in lengths]


def user_id(release: str, i: int) -> str:
    mixed = (i * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    return f"A{mixed:016X}{i:011X}" if release == "2023" else f"A{i:013X}"


def item_id(i: int) -> str:
    return f"B0{i:08X}"


def _heavy_tail(rng: np.random.Generator, n: int, size: int, power: float) -> np.ndarray:
    """Indices in [0, size) drawn with a power-law tail: index 0 most frequent."""
    return np.minimum((size * rng.random(n) ** power).astype(np.int64), size - 1)


def review_lines(release: str, users: np.ndarray, items: np.ndarray, times: np.ndarray, ratings: np.ndarray,
                 texts: list[str], pick: np.ndarray) -> str:
    out = []
    if release == "2023":
        for u, i, t, r, k in zip(users.tolist(), items.tolist(), times.tolist(), ratings.tolist(), pick.tolist()):
            out.append(f'{{"rating": {r:.1f}, "title": "Review title", "text": {texts[k]}, "images": [], '
                       f'"asin": "{item_id(i)}", "parent_asin": "{item_id(i)}", "user_id": "{user_id(release, u)}", '
                       f'"timestamp": {t}, "helpful_vote": 0, "verified_purchase": true}}\n')
    else:
        for u, i, t, r, k in zip(users.tolist(), items.tolist(), times.tolist(), ratings.tolist(), pick.tolist()):
            day = time.strftime("%m %d, %Y", time.gmtime(t))
            out.append(f'{{"overall": {r:.1f}, "verified": true, "reviewTime": "{day}", "reviewerID": '
                       f'"{user_id(release, u)}", "asin": "{item_id(i)}", "style": {{"Color:": " Black"}}, '
                       f'"reviewerName": "A customer", "reviewText": {texts[k]}, "summary": "Five Stars", '
                       f'"unixReviewTime": {t}}}\n')
    return "".join(out)


def meta_line(release: str, i: int, rng: np.random.Generator) -> str:
    title = f"Item {i} " + " ".join(rng.choice(WORDS, 4))
    cats = [MAIN_CATEGORY] + list(rng.choice(CATEGORIES[1:], 2, replace=False))
    kind = i % 10
    if release == "2023":
        price = [12.99, None, "\u2014", 5.0, 19.5, None, 7.25, 3.0, "from 9.99", 44.0][kind]
        record = {"main_category": MAIN_CATEGORY, "title": title, "average_rating": 4.5, "rating_number": 10,
                  "features": ["Durable", "Easy to use"], "description": ["A description."], "price": price,
                  "images": [], "videos": [], "store": f"Store {i % 97}", "categories": cats[1:] if kind % 3 else [],
                  "details": {"Date First Available": "March 1, 2019"}, "parent_asin": item_id(i),
                  "bought_together": None}
    else:
        price = ["$12.99", "", "$5.00 - $9.00", "$1,299.00", "$7.25", "", "$3.00", "$19.50", "$44.00", "$0.99"][kind]
        record = {"category": cats, "tech1": "", "description": ["A description."], "fit": "", "title": title,
                  "also_buy": [], "tech2": "", "brand": f"Brand {i % 89}", "feature": ["Durable"],
                  "rank": "1,234 in Office Products (", "also_view": [], "main_cat": MAIN_CATEGORY,
                  "similar_item": "", "date": "", "price": price, "asin": item_id(i)}
    return json.dumps(record) + "\n"


def generate(out: str, release: str, category: str, num_reviews: int, num_users: int | None = None,
             num_items: int | None = None, seed: int = 0, compress: bool = True, chunk: int = 1 << 18,
             log=None) -> tuple[str, str]:
    """Write the review and metadata files of one category; returns their paths."""
    rng = np.random.default_rng(seed)
    num_users = num_users or max(num_reviews // 3, 1)
    num_items = num_items or max(num_reviews // 12, 1)
    os.makedirs(out, exist_ok=True)
    suffix = (".jsonl" if release == "2023" else ".json") + (".gz" if compress else "")
    reviews_path = os.path.join(out, category + suffix)
    meta_path = os.path.join(out, "meta_" + category + suffix)
    opener = (lambda p: gzip.open(p, "wt", compresslevel=1, encoding="utf-8")) if compress else \
        (lambda p: open(p, "w", encoding="utf-8"))
    texts = [json.dumps(t) for t in _texts(rng, 4096, 10, 110)]
    unit = 1000 if release == "2023" else 1
    start, end = 946684800, 1694476800  # 2000-01-01 .. 2023-09-12 (the 2023 release's last month)
    written = 0
    with opener(reviews_path) as f:
        while written < num_reviews:
            n = min(chunk, num_reviews - written)
            users = _heavy_tail(rng, n, num_users, 2.2)
            items = _heavy_tail(rng, n, num_items, 2.6)
            seconds = rng.integers(start, end, n)
            times = seconds * unit + (rng.integers(0, 1000, n) if unit == 1000 else 0)
            if unit == 1:
                times = times - times % 86400  # 2018: day resolution
            ratings = rng.choice([1.0, 2.0, 3.0, 4.0, 5.0], n, p=[0.06, 0.05, 0.09, 0.2, 0.6])
            f.write(review_lines(release, users, items, times, ratings, texts, rng.integers(0, len(texts), n)))
            written += n
            if log:
                log(f"{written:,} / {num_reviews:,} reviews")
    with opener(meta_path) as f:
        for i in range(num_items + num_items // 50):  # a few items nobody reviewed
            if i % 53 == 7:
                continue  # reviewed items without metadata
            f.write(meta_line(release, i, rng))
            if release == "2018" and i % 41 == 0:
                f.write(meta_line(release, i, rng))  # 2018 repeats some metadata lines
    return reviews_path, meta_path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--release", choices=("2018", "2023"), required=True)
    p.add_argument("--reviews", type=int, required=True)
    p.add_argument("--users", type=int, help="distinct users drawn from (default: reviews / 3)")
    p.add_argument("--items", type=int, help="distinct items drawn from (default: reviews / 12)")
    p.add_argument("--category", default="Office_Products")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plain", action="store_true", help="write uncompressed files")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    began = time.time()
    paths = generate(args.out, args.release, args.category, args.reviews, args.users, args.items, args.seed,
                     compress=not args.plain, log=lambda m: print(m, file=sys.stderr, flush=True))
    for path in paths:
        print(f"wrote {path} ({os.path.getsize(path) / 2**20:,.1f} MiB)")
    print(f"{time.time() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
