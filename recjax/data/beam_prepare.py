"""The review-file half of `recjax prepare --format amazon2018|amazon2023` as Apache Beam pipelines
(`--runner beam`): DirectRunner here, Dataflow, Flink or Spark where a category does not fit one
machine. Beam is an optional extra: `pip install -e ".[beam]"`.

What runs where, and why the result equals the default path's (`recjax.data.review_stream`):

  pipeline 0     read the reviews (gzip or not; local, gs://, s3://), parse and check every line,
                 keep the earliest review of each (user, item) pair (equal times: the lower
                 rating), write the records as shards
  pipelines 1..  the k-core, one round a pipeline (users with < k records, then items with < k),
                 until a round removes nothing; the k-core is unique, so the order of removals
                 does not change it
  last pipeline  each user's records sorted by (time, item ID)
  this process   reads the kept records back (they are the dataset: bounded by what is kept),
                 numbers users and items by ID, joins the item metadata (streamed, kept items
                 only) and applies the split, through the same code as the default path

No step depends on file order (a runner has none), which is why the default path orders users by
ID and a user's reviews by (time, item ID). Intermediate shards go under the pipeline options'
`--temp_location` (needed on Dataflow: a gs:// folder), else a local temporary folder; they are
removed at the end. A bad line stops the pipeline with the file and what was expected (a runner
does not know line numbers).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import tempfile
import uuid

import numpy as np

from recjax.data import review_stream
from recjax.data.errors import DataError, preview
from recjax.data.textio import json_object

_NAMESPACE = "recjax"


def _require_beam():
    try:
        import apache_beam as beam
    except ImportError:
        raise DataError('--runner beam needs Apache Beam: pip install -e ".[beam]"') from None
    return beam


def parse_review(line: str, path: str, fields: review_stream.ReviewFields) -> tuple[tuple[str, str], tuple[int, float]]:
    """One review line -> ((user, item), (time, rating)); DataError naming the file otherwise."""
    record = json_object(path, None, line)
    try:
        user, item, time, rating = review_stream.review_values(path, None, record, fields)
    except DataError as e:
        raise DataError(f"{e} in line {preview(line)}") from None
    return (user, item), (time, rating)


def _counter(name: str):
    from apache_beam.metrics import Metrics

    return Metrics.counter(_NAMESPACE, name)


def _counted(name: str):
    counter = _counter(name)

    def count(element):
        counter.inc()
        return element
    return count


def _encode(record) -> str:
    return json.dumps(record, separators=(",", ":"))


def _run(pipeline) -> dict[str, int]:
    try:
        result = pipeline.run()
        result.wait_until_finish()
    except DataError:
        raise
    except Exception as e:  # a runner wraps a worker's DataError in its own exception
        found = re.search(r"DataError: (.+)", str(e))
        if found is None:
            raise
        raise DataError(found.group(1).strip()) from None
    totals: dict[str, int] = {}
    for c in result.metrics().query()["counters"]:  # one entry per step that updates the counter
        if c.key.metric.namespace == _NAMESPACE:
            value = c.committed if c.committed is not None else c.attempted
            totals[c.key.metric.name] = totals.get(c.key.metric.name, 0) + int(value)
    return totals


def _pipeline_options(text: str):
    from apache_beam.options.pipeline_options import PipelineOptions

    return PipelineOptions(shlex.split(text or ""))


def _dedup(path: str, fields, out: str, options) -> dict[str, int]:
    beam = _require_beam()
    p = beam.Pipeline(options=options)
    pairs = (p | "Read" >> beam.io.ReadFromText(path)
       | "Count" >> beam.Map(_counted("reviews read"))
       | "Parse" >> beam.Map(parse_review, path, fields)
       | "Earliest" >> beam.CombinePerKey(min)  # min over (time, rating)
       | "Kept" >> beam.Map(_counted("pairs")))
    (pairs | "Record" >> beam.MapTuple(lambda key, value: _encode([key[0], key[1], value[0], value[1]]))
           | "Write" >> beam.io.WriteToText(out))
    (pairs | "User" >> beam.MapTuple(lambda key, _: key[0]) | "Distinct" >> beam.Distinct()
           | "Users" >> beam.Map(_counted("users")))
    return _run(p)


def _keep_groups(min_size: int, removed):
    def keep(key_records):
        _, records = key_records
        records = list(records)
        if len(records) >= min_size:
            yield from records
        else:
            removed.inc(len(records))
    return keep


def _kcore_round(src: str, out: str, k: int, options) -> int:
    """One round: drop users with < k records, then items with < k; returns the records removed."""
    beam = _require_beam()
    p = beam.Pipeline(options=options)
    (p | "Read" >> beam.io.ReadFromText(src + "*")
       | "Decode" >> beam.Map(json.loads)
       | "ByUser" >> beam.Map(lambda r: (r[0], r)) | "GroupUsers" >> beam.GroupByKey()
       | "Users" >> beam.FlatMap(_keep_groups(k, _counter("removed")))
       | "ByItem" >> beam.Map(lambda r: (r[1], r)) | "GroupItems" >> beam.GroupByKey()
       | "Items" >> beam.FlatMap(_keep_groups(k, _counter("removed")))
       | "Encode" >> beam.Map(_encode)
       | "Write" >> beam.io.WriteToText(out))
    return _run(p).get("removed", 0)


def _sorted_user(key_records) -> str:
    user, records = key_records
    return _encode([user, sorted((r[2], r[1], r[3]) for r in records)])  # (time, item, rating)


def _by_user(src: str, out: str, options) -> None:
    beam = _require_beam()
    p = beam.Pipeline(options=options)
    (p | "Read" >> beam.io.ReadFromText(src + "*")
       | "Decode" >> beam.Map(json.loads)
       | "ByUser" >> beam.Map(lambda r: (r[0], r)) | "Group" >> beam.GroupByKey()
       | "Sort" >> beam.Map(_sorted_user)
       | "Write" >> beam.io.WriteToText(out))
    _run(p)


def _read_users(prefix: str) -> list[tuple[str, list]]:
    from apache_beam.io.filesystems import FileSystems

    users = []
    for match in FileSystems.match([prefix + "*"])[0].metadata_list:
        with FileSystems.open(match.path) as f:
            for line in f:
                users.append(json.loads(line))
    users.sort(key=lambda u: u[0])
    return users


def kept_reviews(path: str, fields: review_stream.ReviewFields, kcore: int, pipeline_options: str = "",
                 log=print) -> review_stream.KeptReviews:
    """The Beam pipelines of this module's docstring -> the same KeptReviews as review_stream.read_reviews."""
    _require_beam()  # the one-line error where the extra is missing
    from apache_beam.io.filesystems import FileSystems

    options = _pipeline_options(pipeline_options)
    temp = options.get_all_options().get("temp_location")
    local = temp is None
    root = tempfile.mkdtemp(prefix="recjax_beam_") if local else FileSystems.join(temp, f"recjax-{uuid.uuid4().hex}")
    try:
        stage = FileSystems.join(root, "pairs")
        counts = _dedup(path, fields, stage, options)
        dropped = {review_stream.DUPLICATES: counts.get("reviews read", 0) - counts.get("pairs", 0)}
        log(f"  beam: {counts.get('reviews read', 0):,} reviews read, {counts.get('pairs', 0):,} (user, item) pairs")
        removed_total, rounds = 0, 0
        while kcore > 0:
            rounds += 1
            nxt = FileSystems.join(root, f"kcore{rounds}")
            removed = _kcore_round(stage, nxt, kcore, options)
            stage, removed_total = nxt, removed_total + removed
            log(f"  beam: {kcore}-core round {rounds} removed {removed:,} records")
            if removed == 0:
                break
        users_path = FileSystems.join(root, "users")
        _by_user(stage, users_path, options)
        users = _read_users(users_path)
    finally:
        if local:
            shutil.rmtree(root, ignore_errors=True)
        else:
            FileSystems.delete([root])
    if not users:
        raise DataError(f"{path}: no review left after the record policies; nothing to prepare")
    if kcore > 0:
        dropped[f"records removed by the {kcore}/{kcore}-core filter"] = removed_total
        dropped[f"users removed by the {kcore}/{kcore}-core filter"] = counts.get("users", 0) - len(users)
    item_ids = sorted({r[1] for _, records in users for r in records})
    code = {item: i for i, item in enumerate(item_ids)}
    lengths = np.array([len(records) for _, records in users], np.int64)
    offsets = np.zeros(len(users) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = [r for _, records in users for r in records]
    return review_stream.KeptReviews(
        user_ids=[u for u, _ in users], item_ids=item_ids, offsets=offsets,
        items=np.fromiter((code[r[1]] for r in flat), np.int32, len(flat)),
        time=np.fromiter((r[0] for r in flat), np.int64, len(flat)),
        rating=np.fromiter((r[2] for r in flat), np.float32, len(flat)),
        dropped=dropped, reviews_read=counts.get("reviews read", 0))


def resolve(src: str, names: list[str]) -> str | None:
    """The first of `names` under `src` that exists (local or a Beam file system such as gs://)."""
    from apache_beam.io.filesystems import FileSystems

    for name in names:
        path = FileSystems.join(src, name) if "://" in src else os.path.join(src, name)
        if FileSystems.exists(path):
            return path
    return None
