"""The record of the item IDs a checkpoint was trained with (`checkpoints/item_ids.json`): the
dataset, its scheme and a hash of every item's ID text, so a model is never served with a
catalog that writes items differently (another scheme, seed or catalog)."""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Optional

ITEM_IDS_FILE = "item_ids.json"


def record_of(dataset, name: str, data_dir: str) -> dict[str, Any]:
    """The record of a prepared dataset registered as NAME from `data_dir`."""
    digest = hashlib.sha256("\n".join(dataset.item_ids).encode("utf-8")).hexdigest()
    return {"dataset": name, "data_dir": data_dir, "scheme": dataset.indexing, "num_items": dataset.num_items,
            "sha256": digest}


def mismatch(trained: Mapping[str, Any], record: Mapping[str, Any]) -> Optional[str]:
    """Why a model trained with `trained` IDs cannot be used with a dataset of `record` IDs
    (None when they are the same IDs)."""
    if trained.get("sha256") == record["sha256"]:
        return None
    return (f"trained on dataset {trained.get('dataset')!r} with {trained.get('scheme')!r} item IDs "
            f"({trained.get('num_items')} items, {trained.get('data_dir')}), but the task's dataset "
            f"{record['dataset']!r} has {record['scheme']!r} item IDs ({record['num_items']} items, "
            f"{record['data_dir']}); use the prepared dataset the model was trained on (DATA_DIR)")
