"""Popularity: every user gets the items ranked by how often they occur in the TRAIN split
(seq[:-2] of every user), minus the user's own history. Equal counts: the lower item index first."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class Popularity:
    name = "popularity"

    def __init__(self, num_items: int):
        self.num_items = num_items
        self.counts = np.zeros(num_items, dtype=np.int64)  # [items]

    def fit(self, train_sequences: Sequence[np.ndarray]) -> "Popularity":
        flat = np.concatenate([np.asarray(s, np.int64) for s in train_sequences] or [np.zeros(0, np.int64)])
        if flat.size and (flat.min() < 0 or flat.max() >= self.num_items):
            raise ValueError(f"training sequences hold an item index outside [0, {self.num_items})")
        self.counts = np.bincount(flat, minlength=self.num_items)
        return self

    def scores(self, num_users: int) -> np.ndarray:
        """[num_users, items] float32: the train counts, the same row for everybody (a broadcast view)."""
        return np.broadcast_to(self.counts.astype(np.float32), (num_users, self.num_items))
