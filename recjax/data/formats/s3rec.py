"""S3-Rec's files: `<Name>.txt` + `<Name>_item2attributes.json`.

- `<Name>.txt`: `user_id item_id ...` per line in time order (S3-Rec / ICLRec numbering);
- `<Name>_item2attributes.json`: `{"item_id": [attribute_id, ...]}` for every item; the attribute
  ids (brand and category tokens, without names) become the item attributes, as text.

Item text and ASINs are joined from P5 files in the same directory when present:
`datamaps.json` (+ `item_generative_indexing_phase_0.txt`). The item map is
`s3rec_to_p5_item_map.json` ({s3rec id: p5 id}) if present, else the identity (true of Beauty and
Sports, not Toys); when the P5 sequence file is present too, the map is checked to carry the S3-Rec
sequences exactly onto the P5 ones, and a map that does not is an error.
"""
from __future__ import annotations

import collections
import glob
import os

from recjax.data.errors import DataError
from recjax.data.formats import p5
from recjax.data.formats.sequence_file import read_sequence_file
from recjax.data.raw import RawDataset

ITEM_MAP_FILE = "s3rec_to_p5_item_map.json"


def find_name(src: str, name: str | None) -> str:
    found = sorted(os.path.basename(p)[: -len("_item2attributes.json")] for p in glob.glob(os.path.join(src, "*_item2attributes.json")))
    if name and name in found:
        return name
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataError(f"{src}: missing required file (expected <Name>.txt and <Name>_item2attributes.json for --format s3rec)")
    raise DataError(f"{src}: several S3-Rec datasets ({', '.join(found)}); pick one with --s3rec-name")


def read_item2attributes(path: str) -> tuple[list[str], list[list[str]]]:
    """-> (S3-Rec item ids sorted numerically, attribute ids as text per item)."""
    table = p5.read_json(path)
    if not isinstance(table, dict):
        raise DataError(f"{path}: expected a JSON object {{item_id: [attribute_id, ...]}}")
    rows = []
    for key, attrs in table.items():
        if not key.isdigit() or not isinstance(attrs, list):
            raise DataError(f"{path}: key {key!r}: expected an integer item id mapped to a list of attribute ids")
        rows.append((int(key), [str(a) for a in attrs]))
    rows.sort()
    return [str(k) for k, _ in rows], [a for _, a in rows]


def _join_p5_text(raw: RawDataset, src: str, item_text: str | None) -> None:
    """Give S3-Rec items their ASIN and keyword text from P5 files beside them (see module doc)."""
    maps_path = os.path.join(src, "datamaps.json")
    if not os.path.isfile(maps_path):
        return
    asins, _ = p5.read_datamaps(maps_path)
    map_path = os.path.join(src, ITEM_MAP_FILE)
    if os.path.isfile(map_path):
        table = p5.read_json(map_path)
        to_p5 = {int(k): int(v) for k, v in table.items()}
    else:
        map_path = "identity (no " + ITEM_MAP_FILE + ")"
        to_p5 = {int(i): int(i) for i in raw.item_original_ids}
    s3rec_ids = [int(i) for i in raw.item_original_ids]
    if sorted(to_p5.get(i, 0) for i in s3rec_ids) != list(range(1, len(asins) + 1)):
        raise DataError(f"{src}: item map {map_path} is not a bijection from the S3-Rec items onto the {len(asins)} items of {maps_path}")
    try:
        p5_seq_path = p5.find_sequence_file(src)
    except DataError:
        p5_seq_path = None
    if p5_seq_path:  # check the map on the sequences themselves
        _, p5_seqs = p5.read_sequence_file(p5_seq_path, {i + 1: i + 1 for i in range(len(asins))}, maps_path)
        mapped = collections.Counter(tuple(to_p5[s3rec_ids[i]] for i in s) for s in raw.sequences)
        if mapped != collections.Counter(tuple(s.tolist()) for s in p5_seqs):
            raise DataError(f"{src}: item map {map_path} does not carry the S3-Rec sequences onto those of {p5_seq_path}; give {ITEM_MAP_FILE}")
    raw.item_original_ids = [asins[to_p5[i] - 1] for i in s3rec_ids]
    raw.source_files.append(maps_path)
    text_path = p5.find_item_text(src, item_text)
    if text_path:
        text, _ = p5.read_item_text(text_path, set(asins))
        raw.item_titles = [text.get(a, "") for a in raw.item_original_ids]
        raw.notes["items without text (empty title)"] = sum(1 for t in raw.item_titles if not t)
        raw.source_files.append(text_path)


def read_s3rec(src: str, name: str | None = None, item_text: str | None = None) -> RawDataset:
    name = find_name(src, name)
    attr_path = os.path.join(src, f"{name}_item2attributes.json")
    seq_path = os.path.join(src, f"{name}.txt")
    if not os.path.isfile(seq_path):
        raise DataError(f"{seq_path}: missing required file (the S3-Rec sequences of {attr_path})")
    item_ids, attributes = read_item2attributes(attr_path)
    known = {int(k): i for i, k in enumerate(item_ids)}
    users, sequences = read_sequence_file(seq_path, known, attr_path)
    raw = RawDataset(
        item_original_ids=item_ids,
        item_titles=[""] * len(item_ids),
        item_attributes=attributes,
        user_original_ids=users,
        sequences=sequences,
        catalog_is_sequential=True,
        source_files=[seq_path, attr_path],
    )
    _join_p5_text(raw, src, item_text)
    return raw
