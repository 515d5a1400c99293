"""A prepared dataset's users as ArrayRecord shards, read with random access (Grain's
ArrayRecordDataSource), so that each process of a multi-host run reads only its own users.

    DIR/records/users-00000-of-00004.array_record ...   one record per user, users in order,
                                                        shard s holds users [s*U/S, (s+1)*U/S)
    DIR/records/records.json                            {"num_users", "num_shards", "fields"}

A record is a msgpack map: "user" (the global user index), "id" (the original user ID) and the
user's per-interaction arrays as raw little-endian bytes ("items" int32, "ratings" float32,
"timestamps" int64, "rating_split" int8, "split" int8; the ones the dataset has). The catalog
(items.json) and prepared.json stay beside them: every process needs the whole catalog (its item
IDs are what the model writes), not every user.

`recjax prepare --records N` writes them with the dataset; `write_user_records` adds them to a
prepared directory. `load_prepared(DIR, process_index=p, process_count=P)` reads process p's
contiguous block of users only (`process_users`), and `tasks.register_dataset(users='per_process')`
registers the tasks over it.
"""
from __future__ import annotations

import json
import os
import shutil

import msgpack
import numpy as np

from recjax.data.errors import NotPreparedError

RECORDS_DIR = "records"
RECORDS_META = "records.json"
FIELDS = {"items": np.int32, "ratings": np.float32, "timestamps": np.int64, "rating_split": np.int8,
          "split": np.int8}
_ATTRIBUTES = {"items": "sequences", "ratings": "ratings", "timestamps": "timestamps",
               "rating_split": "rating_splits", "split": "interaction_splits"}


def shard_users(num_users: int, num_shards: int, shard: int) -> range:
    """The contiguous block of users of one of `num_shards` (shard files and processes alike)."""
    return range(shard * num_users // num_shards, (shard + 1) * num_users // num_shards)


def process_users(num_users: int, process_index: int, process_count: int) -> range:
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} is not in [0, {process_count})")
    return shard_users(num_users, process_count, process_index)


def encode(dataset, u: int) -> bytes:
    record = {"user": u, "id": dataset.user_original_ids[u] if dataset.user_original_ids else str(u)}
    for field, dtype in FIELDS.items():
        values = getattr(dataset, _ATTRIBUTES[field])
        if values is not None:
            record[field] = np.ascontiguousarray(values[u], dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
    return msgpack.packb(record, use_bin_type=True)


def decode(data: bytes) -> dict:
    record = msgpack.unpackb(data, raw=False)
    for field, dtype in FIELDS.items():
        if field in record:
            record[field] = np.frombuffer(record[field], dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)
    return record


def write_user_records(dataset, directory: str, num_shards: int) -> str:
    """Write DIR/records (replacing it: a temporary folder, then renamed); returns its path."""
    from array_record.python.array_record_module import ArrayRecordWriter

    if num_shards < 1:
        raise ValueError(f"--records: expected a number of shards >= 1, got {num_shards}")
    num_shards = min(num_shards, max(dataset.num_users, 1))
    final = os.path.join(directory, RECORDS_DIR)
    tmp = os.path.join(directory, f".{RECORDS_DIR}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        for shard in range(num_shards):
            # group_size:1 makes each record its own chunk: a random read decodes one user only.
            writer = ArrayRecordWriter(os.path.join(tmp, shard_name(shard, num_shards)), "group_size:1")
            for u in shard_users(dataset.num_users, num_shards, shard):
                writer.write(encode(dataset, u))
            writer.close()
        fields = [f for f in FIELDS if getattr(dataset, _ATTRIBUTES[f]) is not None]
        with open(os.path.join(tmp, RECORDS_META), "w") as f:
            json.dump({"num_users": dataset.num_users, "num_shards": num_shards, "fields": fields}, f)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def shard_name(shard: int, num_shards: int) -> str:
    return f"users-{shard:05d}-of-{num_shards:05d}.array_record"


class UserRecords:
    """Random access to a prepared directory's user records: `records[u]` -> decoded record."""

    def __init__(self, directory: str):
        folder = os.path.join(directory, RECORDS_DIR)
        meta_path = os.path.join(folder, RECORDS_META)
        if not os.path.isfile(meta_path):
            raise NotPreparedError(f"{directory}: no user records ({RECORDS_DIR}/{RECORDS_META} missing; write them "
                                   "with `recjax prepare --records N`)")
        with open(meta_path) as f:
            self.meta = json.load(f)
        paths = [os.path.join(folder, shard_name(s, self.meta["num_shards"])) for s in range(self.meta["num_shards"])]
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise NotPreparedError(f"{missing[0]}: missing user record shard ({self.meta['num_shards']} expected)")
        import grain

        self._source = grain.sources.ArrayRecordDataSource(paths)
        if len(self._source) != self.meta["num_users"]:
            raise NotPreparedError(f"{folder}: {len(self._source)} records, {RECORDS_META} says {self.meta['num_users']}")

    def __len__(self) -> int:
        return self.meta["num_users"]

    def __getitem__(self, u: int) -> dict:
        return decode(self._source[u])

    def read(self, users: range) -> list[dict]:
        """Records of a contiguous block of users, in order (one batched read)."""
        return [self[u] for u in users]
