"""A generated recommendation dataset with learnable signal: the embedded default for the
quickstart and the tests (no file from outside the repo).

Catalog: `num_items` products with readable unique titles ("Lumen hydrating face serum"), each in
one of `num_categories` categories, with a brand, a popularity (Zipf within its category) and a
quality. Users: a taste over categories (a concentrated Dirichlet) and a rating bias.

A sequence is a walk: the first item is drawn by taste and popularity; each next item is, with
probability `follow_prob`, one of the previous item's 3 "follow-up" items (a fixed item-to-item
Markov structure, e.g. cleanser -> toner), otherwise drawn from a category chosen by mixing the
category-transition matrix row of the previous item's category with the user's taste. So the next
item is predictable from the history far better than from popularity (tests check this), and items
are never repeated within a user. Ratings (1-5) grow with the user's taste for the category and
the item's quality; timestamps increase by random gaps from 2014. Everything is a function of `seed`.
"""
from __future__ import annotations


import numpy as np

from recjax.data.raw import RawDataset

CATEGORIES = {  # category -> product nouns
    "skin care": ["face cream", "serum", "cleanser", "toner", "eye gel", "night mask"],
    "hair care": ["shampoo", "conditioner", "hair oil", "styling gel", "dry shampoo", "hair mask"],
    "makeup": ["lipstick", "mascara", "foundation", "eyeliner", "blush", "concealer"],
    "fragrance": ["eau de parfum", "body mist", "cologne", "perfume oil", "scented candle", "roll-on"],
    "bath and body": ["body wash", "bath salts", "body lotion", "hand soap", "scrub", "bath bomb"],
    "nail care": ["nail polish", "top coat", "cuticle oil", "nail file", "polish remover", "base coat"],
    "men's grooming": ["beard oil", "shaving cream", "aftershave", "razor", "beard balm", "face wash"],
    "tools and brushes": ["makeup brush", "sponge", "hair dryer", "curling iron", "tweezers", "mirror"],
    "sun care": ["sunscreen", "after-sun gel", "tanning lotion", "spf lip balm", "sun spray", "bronzer"],
    "oral care": ["toothpaste", "mouthwash", "whitening strips", "floss", "toothbrush", "tongue scraper"],
    "wellness": ["vitamin gummies", "herbal tea", "sleep spray", "massage oil", "bath tea", "face roller"],
    "kids and baby": ["baby lotion", "baby shampoo", "diaper cream", "kids toothpaste", "baby oil", "bubble bath"],
}
BRANDS = ["Lumen", "Aurora", "Belle", "Nordic Leaf", "Oasis", "Verde", "Pure Drop", "Solstice",
          "Kinfolk", "Marigold", "Tidewater", "Ember"]
ADJECTIVES = ["hydrating", "gentle", "lavender", "matte", "organic", "citrus", "extra strength", "travel size",
              "unscented", "coconut", "charcoal", "rose", "vanilla", "sensitive", "daily", "deluxe",
              "mint", "aloe", "green tea", "argan"]
START_TIME = 1_388_534_400  # 2014-01-01 UTC


def _draw(rng: np.random.Generator, weights: np.ndarray) -> int:
    """An index drawn with probability proportional to `weights` (faster than rng.choice(p=...))."""
    cumulative = np.cumsum(weights)
    return min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")), len(weights) - 1)


def synthetic_raw(
    num_users: int = 1000,
    num_items: int = 300,
    seed: int = 0,
    min_len: int = 5,
    max_len: int = 20,
    num_categories: int = 10,
    follow_prob: float = 0.5,
) -> RawDataset:
    """The generated dataset as a RawDataset (see the module docstring)."""
    if not 1 <= num_categories <= len(CATEGORIES):
        raise ValueError(f"num_categories must be in 1..{len(CATEGORIES)}, got {num_categories}")
    if not 3 <= min_len <= max_len:
        raise ValueError(f"need 3 <= min_len <= max_len, got {min_len}, {max_len}")
    if num_items < max_len + 4 or num_items > num_categories * len(BRANDS) * len(ADJECTIVES) * 6:
        raise ValueError(f"num_items must be in {max_len + 4}..{num_categories * len(BRANDS) * len(ADJECTIVES) * 6}, got {num_items}")
    rng = np.random.default_rng(seed)
    category_names = list(CATEGORIES)[:num_categories]

    # Catalog.
    item_category = np.sort(rng.integers(0, num_categories, num_items))
    item_category[:num_categories] = np.arange(num_categories)  # every category has an item
    item_category = np.sort(item_category)
    titles, attributes, used = [], [], set()
    for c in item_category:
        while True:
            brand = BRANDS[rng.integers(len(BRANDS))]
            title = f"{brand} {ADJECTIVES[rng.integers(len(ADJECTIVES))]} {CATEGORIES[category_names[c]][rng.integers(6)]}"
            if title not in used:
                break
        used.add(title)
        titles.append(title)
        attributes.append([category_names[c], brand])
    members = [np.flatnonzero(item_category == c) for c in range(num_categories)]
    popularity = np.empty(num_items)  # Zipf within category
    for m in members:
        popularity[m] = 1.0 / (1.0 + rng.permutation(len(m))) ** 0.8
    quality = rng.normal(0.0, 0.7, num_items)

    # Structure: category transitions (sticky, plus 2 favoured next categories) and item follow-ups.
    transition = np.full((num_categories, num_categories), 0.2 / num_categories)
    for c in range(num_categories):
        transition[c, c] += 0.4
        transition[c, rng.choice(num_categories, 2, replace=False)] += 0.2
    transition /= transition.sum(1, keepdims=True)
    follow_ups = np.empty((num_items, 3), np.int64)
    for i in range(num_items):
        same = members[item_category[i]]
        near = members[int(np.argmax(transition[item_category[i]] * (np.arange(num_categories) != item_category[i])))] if num_categories > 1 else same
        pool = np.unique(np.concatenate([same, near]))
        pool = pool[pool != i]
        if len(pool) < 3:  # a tiny category: widen to the whole catalog
            pool = np.delete(np.arange(num_items), i)
        follow_ups[i] = rng.choice(pool, 3, replace=False)

    # Users.
    taste = rng.dirichlet(np.full(num_categories, 0.3), num_users)  # [users, categories]
    rating_bias = rng.normal(0.0, 0.4, num_users)
    lengths = rng.integers(min_len, max_len + 1, num_users)
    sequences, ratings, timestamps = [], [], []
    sizes = np.array([len(m) for m in members])
    for u in range(num_users):
        available = np.ones(num_items, bool)  # no item twice per user
        left = sizes.copy()  # unseen items per category
        seq: list[int] = []
        for step in range(lengths[u]):
            item = -1
            if step and rng.random() < follow_prob:
                options = follow_ups[seq[-1]][available[follow_ups[seq[-1]]]]
                if len(options):
                    item = int(options[rng.integers(len(options))])
            if item < 0:
                mix = taste[u] if not step else 0.5 * transition[item_category[seq[-1]]] + 0.5 * taste[u]
                mix = mix * (left > 0)
                c = _draw(rng, mix if mix.sum() > 0 else (left > 0).astype(float))
                m = members[c]
                item = int(m[_draw(rng, popularity[m] * available[m])])
            seq.append(item)
            available[item] = False
            left[item_category[item]] -= 1
        seq = np.array(seq, np.int32)
        affinity = np.clip(np.log(taste[u, item_category[seq]] * num_categories + 1e-3), -2.0, 2.0)
        score = 3.3 + 0.6 * affinity + quality[seq] + rating_bias[u] + rng.normal(0.0, 0.5, len(seq))
        sequences.append(seq)
        ratings.append(np.clip(np.rint(score), 1, 5).astype(np.float32))
        gaps = rng.exponential(3 * 86400, len(seq)).astype(np.int64) + 60
        timestamps.append(START_TIME + int(rng.integers(0, 300 * 86400)) + np.cumsum(gaps))

    return RawDataset(
        item_original_ids=[f"S{i:09d}" for i in range(num_items)],
        item_titles=titles,
        item_attributes=attributes,
        user_original_ids=[f"U{u:07d}" for u in range(num_users)],
        sequences=sequences,
        ratings=ratings,
        timestamps=timestamps,
        source_files=[f"synthetic(num_users={num_users}, num_items={num_items}, seed={seed}, "
                      f"min_len={min_len}, max_len={max_len}, num_categories={num_categories}, follow_prob={follow_prob})"],
    )
