"""Prediction rows: every evaluated user's ranked items, one JSON object per line, written by
`recjax eval --predictions` and `recjax baseline` and read by `recjax compare`.

    {"task": "beauty_retrieval", "kind": "retrieval", "user": 17, "target": "3757",
     "target_rank": 4, "ranked": ["5046", ...], "target_original_id": "B00..."}

`kind` (retrieval or ranking) says which metrics the rank gives; `target_rank` is 0-based, -1 when
the target is not in `ranked`; `target_original_id` (the dataset's own item ID) pairs runs whose
item-ID schemes differ.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable

from recjax.data.jsonl import write_jsonl

PREDICTIONS_FILE = "predictions.jsonl"
KINDS = ("retrieval", "ranking")


def write_predictions(path: str, rows: Iterable[dict]) -> int:
    """Writes the rows atomically (the directory is created); returns their count."""
    rows = list(rows)
    for row in rows:
        if row.get("kind") not in KINDS:
            raise ValueError(f"prediction row of {row.get('task')!r}: kind must be one of {KINDS}, got "
                             f"{row.get('kind')!r}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_jsonl(path, rows)
    return len(rows)


def read_predictions(path: str) -> dict[str, dict]:
    """{task: {user: row}} of a predictions file (or a directory holding predictions.jsonl); under a
    timestamp split, where a user has several cases, {task: {(user, target): row}}. One-line errors
    naming the file and line."""
    if os.path.isdir(path):
        path = os.path.join(path, PREDICTIONS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such predictions file (write one with `recjax eval --predictions`)")
    out: dict[str, dict[int, dict]] = {}
    with open(path, encoding="utf-8", errors="strict") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                task, kind, user, rank = row["task"], row["kind"], int(row["user"]), int(row["target_rank"])
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{number}: expected a JSON object with task, kind, user, target_rank "
                                 f"({e!r}; files written before `kind` was recorded: evaluate again)") from None
            if kind not in KINDS:
                raise ValueError(f"{path}:{number}: kind must be one of {KINDS}, got {kind!r}")
            rows = out.setdefault(task, {})
            key = (user, row.get("target_original_id", row.get("target")))
            if key in rows:
                raise ValueError(f"{path}:{number}: user {user}'s case {key[1]!r} of {task} appears twice")
            rows[key] = dict(row, target_rank=rank)
    if not out:
        raise ValueError(f"{path}: no predictions")
    for task, rows in out.items():  # one case a user (leave-last-out): keyed by the user alone
        if len({user for user, _ in rows}) == len(rows):
            out[task] = {user: row for (user, _), row in rows.items()}
    return out


def kind_of(by_user: dict[int, dict]) -> str:
    """The kind (retrieval or ranking) of one task's rows."""
    kinds = {row["kind"] for row in by_user.values()}
    if len(kinds) != 1:
        raise ValueError(f"rows of kinds {sorted(kinds)}: a task is retrieval or ranking")
    return kinds.pop()
