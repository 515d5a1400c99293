"""Rating baselines: predict the global mean rating, or the item's mean rating (the global mean
for an item without training ratings). Fit on the rating records the T5 rating task trains on:
P5's 80% rating-train split minus each user's leave-one-out validation and test items
(tasks/examples.py `_rating_records`), so both see the same ratings."""
from __future__ import annotations

import numpy as np

from recjax import metrics
from recjax.data import PreparedDataset

RATING_PROTOCOL = ("P5's seeded 80/10/10 split of the rating records; fit on the train records minus each "
                   "user's leave-one-out valid/test items (as the T5 rating task); RMSE/MAE on the valid and "
                   "test records")


def rating_train_records(ds: PreparedDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, items, ratings) of the rating-train split without each user's last two items."""
    users, items, ratings = ds.rating_split("train")
    last = np.array([s[-1] for s in ds.sequences], np.int32)  # [users]
    second_last = np.array([s[-2] for s in ds.sequences], np.int32)
    keep = (items != last[users]) & (items != second_last[users])
    return users[keep], items[keep], ratings[keep]


class GlobalMean:
    name = "global_mean"

    def fit(self, items: np.ndarray, ratings: np.ndarray, num_items: int) -> "GlobalMean":
        del items, num_items
        if ratings.size == 0:
            raise ValueError("no training ratings to fit a mean on")
        self.mean = float(np.mean(ratings))
        return self

    def predict(self, items: np.ndarray) -> np.ndarray:
        return np.full(items.shape, self.mean, np.float64)


class ItemMean(GlobalMean):
    name = "item_mean"

    def fit(self, items: np.ndarray, ratings: np.ndarray, num_items: int) -> "ItemMean":
        super().fit(items, ratings, num_items)
        sums = np.bincount(items, weights=ratings, minlength=num_items)  # [items]
        counts = np.bincount(items, minlength=num_items)
        self.item_means = np.where(counts > 0, sums / np.maximum(counts, 1), self.mean)
        return self

    def predict(self, items: np.ndarray) -> np.ndarray:
        return self.item_means[items]


def fit_and_evaluate(model_name: str, ds: PreparedDataset) -> dict[str, dict[str, float]]:
    """{"valid": {rmse, mae, num_examples}, "test": {...}} of a fitted mean baseline."""
    model = {"global_mean": GlobalMean, "item_mean": ItemMean}[model_name]()
    _, items, ratings = rating_train_records(ds)
    model.fit(items, ratings, ds.num_items)
    out = {}
    for split in ("valid", "test"):
        _, items, ratings = ds.rating_split(split)
        out[split] = metrics.rating_metrics(model.predict(items), ratings)  # rmse, mae, num_examples
    return out
