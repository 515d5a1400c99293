"""Statistics of a prepared dataset (`recjax stats`)."""
from __future__ import annotations

import numpy as np

from recjax.data.prepared import PreparedDataset

PERCENTILES = (5, 25, 50, 75, 90, 95, 99)


def dataset_stats(ds: PreparedDataset) -> dict:
    lengths = np.array([len(s) for s in ds.sequences], np.int64)
    stats = {
        "name": ds.name,
        "source_format": ds.source_format,
        "indexing": ds.indexing,
        "users": ds.num_users,
        "items": ds.num_items,
        "interactions": int(lengths.sum()),
        "density": float(lengths.sum()) / (ds.num_users * ds.num_items) if ds.num_users and ds.num_items else 0.0,
        "length": {
            "mean": float(lengths.mean()) if len(lengths) else 0.0,
            "min": int(lengths.min()) if len(lengths) else 0,
            **{f"p{p}": float(np.percentile(lengths, p)) for p in PERCENTILES},
            "max": int(lengths.max()) if len(lengths) else 0,
        },
        "items_with_text": sum(1 for t in ds.item_titles if t),
        "items_with_attributes": sum(1 for a in ds.item_attributes if a),
    }
    if ds.ratings is not None:
        ratings = np.concatenate(ds.ratings)
        values, counts = np.unique(ratings, return_counts=True)
        stats["ratings"] = {"mean": float(ratings.mean()), "histogram": {f"{v:g}": int(c) for v, c in zip(values, counts)}}
        splits = np.concatenate(ds.rating_splits)
        stats["rating_split"] = {name: int((splits == code).sum()) for code, name in enumerate(("train", "valid", "test"))}
    if ds.timestamps is not None:
        times = np.concatenate(ds.timestamps)
        stats["time_range"] = [int(times.min()), int(times.max())]
    stats["split"] = {"scheme": ds.split_scheme}
    if ds.interaction_splits is not None:
        labels = np.bincount(np.concatenate(ds.interaction_splits), minlength=3)
        stats["split"].update(cut_points=list(ds.split_times), train=int(labels[0]), valid=int(labels[1]),
                              test=int(labels[2]), users_with_test_cases=int(sum((c == 2).any() for c in ds.interaction_splits)))
    return stats


def format_stats(stats: dict) -> str:
    length = stats["length"]
    pct = "  ".join(f"p{p} {length[f'p{p}']:g}" for p in PERCENTILES)
    lines = [
        f"dataset        {stats['name']} (format {stats['source_format']}, {stats['indexing']} indexing)",
        f"users          {stats['users']:,}",
        f"items          {stats['items']:,}",
        f"interactions   {stats['interactions']:,}",
        f"density        {100 * stats['density']:.4f}%",
        f"sequence len   mean {length['mean']:.2f}  min {length['min']}  {pct}  max {length['max']}",
        f"item text      {stats['items_with_text']:,} items with a title/text, {stats['items_with_attributes']:,} with attributes",
    ]
    if "ratings" in stats:
        hist = "  ".join(f"{k}: {v:,}" for k, v in stats["ratings"]["histogram"].items())
        split = stats["rating_split"]
        lines.append(f"ratings        mean {stats['ratings']['mean']:.3f}  ({hist})")
        lines.append(f"rating split   train {split['train']:,} / valid {split['valid']:,} / test {split['test']:,}")
    else:
        lines.append("ratings        none in the source")
    if "time_range" in stats:
        import datetime

        first, last = (datetime.datetime.fromtimestamp(t, datetime.timezone.utc).date() for t in stats["time_range"])
        lines.append(f"time range     {first} .. {last}")
    split = stats.get("split", {"scheme": "leave_last_out"})
    if split["scheme"] == "timestamp":
        lines.append(f"split          timestamp at {tuple(split['cut_points'])}: train {split['train']:,} / valid "
                     f"{split['valid']:,} / test {split['test']:,} interactions; {split['users_with_test_cases']:,} "
                     "users with a test case")
    else:
        lines.append("split          leave-last-out (per user: the last tests, the one before validates)")
    return "\n".join(lines)
