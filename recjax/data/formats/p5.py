"""P5's files: `sequential_data.txt` (or `sequential.txt`) + `datamaps.json` (+ an item-text file).

- `sequential_data.txt`: `user_id item_id ...` per line in time order, P5's 1-based numbering;
- `datamaps.json`: `id2item` (P5 item id -> ASIN) is required, `id2user` (-> reviewerID) optional;
- item text (optional): `ASIN keywords ...` per line, e.g. IDGenRec's
  `item_generative_indexing_phase_0.txt`; the keywords become the item text.
No ratings or timestamps: P5's sequence files do not carry them.
"""
from __future__ import annotations

import json
import os

from recjax.data.errors import DataError, at
from recjax.data.formats.sequence_file import read_sequence_file
from recjax.data.raw import RawDataset
from recjax.data.textio import iter_lines, require_file

SEQUENCE_FILES = ("sequential_data.txt", "sequential.txt")
ITEM_TEXT_FILES = ("item_generative_indexing_phase_0.txt",)


def find_sequence_file(src: str) -> str:
    for name in SEQUENCE_FILES:
        if os.path.isfile(os.path.join(src, name)):
            return os.path.join(src, name)
    raise DataError(f"{src}: missing required file (expected {' or '.join(SEQUENCE_FILES)} for --format p5)")


def read_json(path: str):
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: empty file (expected a JSON object)")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: byte offset {e.start} is not valid UTF-8 (expected UTF-8 JSON)") from None
    except json.JSONDecodeError as e:
        raise at(path, e.lineno, f"invalid JSON at column {e.colno}: {e.msg}") from None


def read_datamaps(path: str) -> tuple[list[str], dict[str, str]]:
    """-> (ASIN per P5 item id 1..N in id order, P5 user id -> reviewerID)."""
    maps = read_json(path)
    if not isinstance(maps, dict) or not isinstance(maps.get("id2item"), dict):
        raise DataError(f"{path}: expected a JSON object with an 'id2item' object (P5 item id -> ASIN)")
    id2item = maps["id2item"]
    try:
        ids = sorted(int(k) for k in id2item)
    except ValueError:
        raise DataError(f"{path}: key 'id2item' must map integer ids to ASINs; found a non-integer key") from None
    if ids != list(range(1, len(ids) + 1)):
        missing = next(i for i in range(1, len(ids) + 2) if i not in set(ids))
        raise DataError(f"{path}: 'id2item' ids must be 1..{len(ids)} without gaps; id {missing} is missing")
    id2user = maps.get("id2user") or {}
    return [str(id2item[str(i)]) for i in ids], {str(k): str(v) for k, v in id2user.items()}


def read_item_text(path: str, known: set[str]) -> tuple[dict[str, str], int]:
    """`ASIN text...` lines -> ({ASIN: text}, lines whose ASIN is not in `known`). The text may be
    empty (one real Beauty line is); an ASIN on two lines is an error."""
    text: dict[str, str] = {}
    line_of: dict[str, int] = {}
    unknown = 0
    for lineno, line in iter_lines(path):
        key, _, words = line.strip().partition(" ")
        if key in line_of:
            raise at(path, lineno, f"item {key} already has text on line {line_of[key]} (expected one 'ITEM_ID text...' line per item)")
        line_of[key] = lineno
        if key not in known:
            unknown += 1
            continue
        text[key] = " ".join(words.split())
    return text, unknown


def find_item_text(src: str, item_text: str | None) -> str | None:
    if item_text:
        return require_file(item_text, "--item-text")
    for name in ITEM_TEXT_FILES:
        if os.path.isfile(os.path.join(src, name)):
            return os.path.join(src, name)
    return None


def read_p5(src: str, item_text: str | None = None) -> RawDataset:
    seq_path = find_sequence_file(src)
    maps_path = require_file(os.path.join(src, "datamaps.json"), "P5 datamaps.json: id2item, P5 item id -> ASIN")
    asins, id2user = read_datamaps(maps_path)
    known = {i + 1: i for i in range(len(asins))}
    users, sequences = read_sequence_file(seq_path, known, f"{maps_path} id2item")
    raw = RawDataset(
        item_original_ids=asins,
        item_titles=[""] * len(asins),
        item_attributes=[[] for _ in asins],
        user_original_ids=[id2user.get(u, u) for u in users],
        sequences=sequences,
        catalog_is_sequential=True,
        source_files=[seq_path, maps_path],
    )
    text_path = find_item_text(src, item_text)
    if text_path:
        text, unknown = read_item_text(text_path, set(asins))
        raw.item_titles = [text.get(a, "") for a in asins]
        raw.dropped["item-text lines for items not in datamaps.json"] = unknown
        raw.notes["items without text (empty title)"] = sum(1 for t in raw.item_titles if not t)
        raw.source_files.append(text_path)
    return raw
