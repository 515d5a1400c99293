"""The embedded default dataset: the seeded synthetic catalog, generated on first use.

Quickstart and CI need no file from outside the repo: Gin files point the tasks at
`@embedded_synthetic_dataset()`, which writes the prepared dataset once and returns its path.
"""
from __future__ import annotations

import os

import gin


@gin.configurable
def embedded_synthetic_dataset(out_dir: str = "outputs/data/synthetic", num_users: int = 1000,
                               num_items: int = 300, seed: int = 0) -> str:
    from recjax.data import load_prepared
    from recjax.data.writing import make_synthetic

    if os.path.isdir(out_dir):
        load_prepared(out_dir)  # a clear error if something else sits there
        return out_dir
    return make_synthetic(out_dir, num_users=num_users, num_items=num_items, seed=seed)
