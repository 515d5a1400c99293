"""Writing prepared datasets: a RawDataset (record policies applied) -> a prepared directory, with
its optional TFDS copy; and the synthetic dataset generated and written in one call.

The layer above the readers (`pipeline`), the generator (`synthetic`) and the TFDS builder
(`tfds_builder`, which itself reads through `pipeline`): none of them imports this module, so the
data package has no import cycle.
"""
from __future__ import annotations

import os
import time

from recjax.data.atomic import atomic_directory
from recjax.data.preparation import apply_policies
from recjax.data.prepared import PreparedDataset, write_prepared_files
from recjax.data.raw import RawDataset, to_prepared
from recjax.data.synthetic import synthetic_raw


def write_dataset(raw: RawDataset, out_dir: str, name: str, source_format: str, indexing: str = "random",
                  seed: int = 0, with_tfds: bool = True, overwrite: bool = False, log=None) -> PreparedDataset:
    """Write `raw` (policies applied, see `apply_policies`) as a prepared directory: a temporary path, then renamed."""
    dataset = to_prepared(raw, name=name, source_format=source_format, indexing=indexing, seed=seed)
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        write_prepared(dataset, raw, tmp, with_tfds=with_tfds, log=log)
    return dataset


def write_prepared(dataset: PreparedDataset, raw: RawDataset, directory: str, with_tfds: bool = True, log=None) -> None:
    extra = {
        "source_files": [os.path.abspath(p) if os.path.exists(p) else p for p in raw.source_files],
        "dropped": raw.dropped,
        "notes": raw.notes,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if with_tfds:
        from recjax.data.tfds_builder import write_tfds  # late: TensorFlow Datasets is heavy

        folder = write_tfds(dataset, directory, log=log)
        extra["tfds_dir"] = os.path.relpath(folder, directory)
        extra["tfds_name"] = "recjax_dataset/{}:{}".format(*os.path.relpath(folder, os.path.join(directory, "tfds", "recjax_dataset")).split(os.sep))
    write_prepared_files(dataset, directory, extra_metadata=extra)


def make_synthetic(
    out_dir: str,
    num_users: int = 1000,
    num_items: int = 300,
    seed: int = 0,
    indexing: str = "random",
    name: str = "synthetic",
    with_tfds: bool = False,
    **generator_options,
) -> str:
    """Generate and write a prepared synthetic dataset at `out_dir` (atomically); returns out_dir.

    Quick (well under a second for the defaults without TFDS). `with_tfds=True` also writes the
    TFDS copy, as `recjax prepare --format synthetic` does. Load it with `load_prepared(out_dir)`.
    """
    raw = apply_policies(synthetic_raw(num_users=num_users, num_items=num_items, seed=seed, **generator_options), "synthetic")
    write_dataset(raw, os.fspath(out_dir), name=name, source_format="synthetic", indexing=indexing, seed=seed,
                  with_tfds=with_tfds, overwrite=True)
    return os.fspath(out_dir)
