"""The TFDS form of a prepared dataset: `RecjaxDataset`, a `tfds` GeneratorBasedBuilder with one
config per dataset.

Raw files come from the manual dir (`--manual_dir` / `DownloadConfig(manual_dir=...)`); configs
with official URLs (MovieLens, Amazon 2014) download them only when asked
(`tfds.builder("recjax_dataset/ml_100k", allow_download=True)`, or `recjax prepare --download`),
so nothing waits on the network offline.

Examples, one per user (`user_index` is the internal user index):
  user_id     text        the original user id
  items       int32 [n]   internal item indices, time order (metadata `item_ids[i]` is the ID text)
  ratings     float32 [n], timestamps int64 [n], rating_split int8 [n] (0/1/2 = P5 rating
              train/valid/test): only for formats with ratings (amazon2014, movielens, synthetic)
Splits (leave-one-out): `train` holds seq[:-2]; `validation` seq[:-1] and `test` the full
sequence, whose last item is the target. The item catalog (ID text, original IDs, titles,
attributes) is in the dataset's metadata (`metadata.json`). Read it without recjax:
`tfds.builder_from_directory(DIR/tfds/recjax_dataset/<config>/1.0.0).as_dataset(split="test")`.
"""
from __future__ import annotations

import dataclasses
import os
import re
import tempfile

import numpy as np
import tensorflow_datasets as tfds
import tqdm
from etils import epath

from recjax.data.download import official_urls
from recjax.data.prepared import PreparedDataset

HAS_RATINGS = {"amazon2014": True, "amazon2018": True, "amazon2023": True, "movielens": True, "synthetic": True,
               "p5": False, "s3rec": False}
HOMEPAGE = "https://github.com/recjax/recjax"


@dataclasses.dataclass(eq=False)
class RecjaxDatasetConfig(tfds.core.BuilderConfig):
    source_format: str = "p5"
    indexing: str = "random"
    seed: int = 0
    options: dict = dataclasses.field(default_factory=dict)  # recjax.data.preparation.SourceOptions fields
    download_urls: dict = dataclasses.field(default_factory=dict)  # file name -> official URL


def _configs() -> list[RecjaxDatasetConfig]:
    out = []
    for short, category in (("beauty", "Beauty"), ("sports", "Sports_and_Outdoors"), ("toys", "Toys_and_Games")):
        out.append(RecjaxDatasetConfig(name=short, source_format="p5", description=f"P5's {category} files"))
        out.append(RecjaxDatasetConfig(name=f"{short}_s3rec", source_format="s3rec", description=f"S3-Rec's {category} files"))
        out.append(RecjaxDatasetConfig(name=f"amazon2014_{short}", source_format="amazon2014", options={"category": category},
                                       download_urls=official_urls("amazon2014", category, ""), description=f"Amazon 2014 5-core {category}"))
    out.append(RecjaxDatasetConfig(name="ml_100k", source_format="movielens", description="MovieLens 100k",
                                   download_urls=official_urls("movielens", None, "100k")))
    out.append(RecjaxDatasetConfig(name="ml_1m", source_format="movielens", description="MovieLens 1M",
                                   download_urls=official_urls("movielens", None, "1m")))
    out.append(RecjaxDatasetConfig(name="synthetic", source_format="synthetic", description="generated (recjax.data.synthetic)"))
    return out


def _vector(dtype) -> tfds.features.Tensor:
    # Tensor with a dynamic length encodes ~7x faster than tfds.features.Sequence.
    return tfds.features.Tensor(shape=(None,), dtype=dtype)


def config_name(name: str) -> str:
    """A dataset name as a TFDS config name (lowercase letters, digits, underscores)."""
    return re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_") or "dataset"


class RecjaxDataset(tfds.core.GeneratorBasedBuilder):
    """recjax prepared recommendation datasets (see the module docstring)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = _configs()
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Put the raw files of the config's format in the manual dir:
      p5: sequential_data.txt (or sequential.txt), datamaps.json [, item_generative_indexing_phase_0.txt]
      s3rec: <Name>.txt, <Name>_item2attributes.json
      amazon2014: reviews_<Category>_5.json.gz, meta_<Category>.json.gz (or allow downloads)
      movielens: u.data + u.item, ratings.dat + movies.dat, or a zip of them (or allow downloads)
    See recjax/data/README.md.
    """

    def __init__(self, *, prepared: PreparedDataset | None = None, allow_download: bool = False, **kwargs):
        self._prepared = prepared  # already read by `recjax prepare`: not read twice
        self._allow_download = allow_download
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=features_for(self.builder_config.source_format),
            metadata=tfds.core.MetadataDict(),
            homepage=HOMEPAGE,
            disable_shuffling=True,  # keep users in their internal order
        )

    def _source(self, dl_manager) -> str | None:
        config = self.builder_config
        if config.source_format == "synthetic":
            return None
        manual = self._manual_dir(dl_manager)
        if manual is not None:
            return manual
        if self._allow_download and config.download_urls:
            paths = dl_manager.download(config.download_urls)
            if len(paths) == 1:  # a zip archive, read in place
                return os.fspath(next(iter(paths.values())))
            folder = tempfile.mkdtemp(prefix="recjax_download_")
            for name, path in paths.items():
                os.symlink(os.fspath(path), os.path.join(folder, name))
            return folder
        raise FileNotFoundError(
            f"config {config.name!r}: no raw files (give a manual dir{'; or allow downloads' if config.download_urls else ''})"
            + self.MANUAL_DOWNLOAD_INSTRUCTIONS)

    @staticmethod
    def _manual_dir(dl_manager) -> str | None:
        try:
            return os.fspath(dl_manager.manual_dir)
        except AssertionError:  # TFDS's way of saying "missing or empty"
            return None

    def _split_generators(self, dl_manager):
        config = self.builder_config
        if self._prepared is None:
            from recjax.data.preparation import SourceOptions, build

            options = dict(config.options)
            self._prepared, _ = build(config.source_format, self._source(dl_manager), name=config.name,
                                      indexing=config.indexing, seed=config.seed, options=SourceOptions(**options))
        ds = self._prepared
        self.info.metadata.update(catalog_metadata(ds))
        return {split: self._generate_examples(end) for split, end in SPLIT_ENDS.items()}

    def _generate_examples(self, end: int | None):
        with_ratings = "ratings" in self.info.features
        for u in range(self._prepared.num_users):
            yield u, user_example(self._prepared, u, end, with_ratings)


def catalog_metadata(ds: PreparedDataset) -> dict:
    return {
        "name": ds.name, "indexing": ds.indexing, "source_format": ds.source_format, "seed": ds.seed,
        "item_ids": ds.item_ids, "item_titles": ds.item_titles,
        "item_original_ids": ds.item_original_ids, "item_attributes": ds.item_attributes,
    }


def features_for(source_format: str) -> tfds.features.FeaturesDict:
    features = {
        "user_index": np.int32,
        "user_id": tfds.features.Text(),
        "items": _vector(np.int32),
    }
    if HAS_RATINGS[source_format]:
        features["ratings"] = _vector(np.float32)
        features["timestamps"] = _vector(np.int64)
        features["rating_split"] = _vector(np.int8)
    return tfds.features.FeaturesDict(features)


def user_example(ds: PreparedDataset, u: int, end: int | None, with_ratings: bool) -> dict:
    """User u's example; `end` cuts the sequence (-2: train, -1: validation, None: test); under a
    timestamp split, the interactions before the split's end (train: before the first cut point;
    validation: before the second)."""
    if ds.interaction_splits is not None and end is not None:
        end = int(np.count_nonzero(ds.interaction_splits[u] <= (0 if end == -2 else 1)))
    cut = slice(0, end)
    example = {"user_index": u, "user_id": ds.user_original_ids[u], "items": ds.sequences[u][cut]}
    if with_ratings:
        example["ratings"] = ds.ratings[u][cut]
        example["timestamps"] = ds.timestamps[u][cut]
        example["rating_split"] = ds.rating_splits[u][cut]
    return example


SPLIT_ENDS = {"train": -2, "validation": -1, "test": None}


def _tf_example(example: dict) -> bytes:
    """The tf.train.Example that TFDS's serializer writes for `features_for(...)` (TFDS stores
    int8/int32 as int64 and casts back when decoding); tests check both decode the same."""
    import tensorflow as tf

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    feature = {
        "user_index": ints([int(example["user_index"])]),
        "user_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[example["user_id"].encode("utf-8")])),
        "items": ints(example["items"].tolist()),
    }
    if "ratings" in example:
        feature["ratings"] = tf.train.Feature(float_list=tf.train.FloatList(value=example["ratings"].tolist()))
        feature["timestamps"] = ints(example["timestamps"].tolist())
        feature["rating_split"] = ints(example["rating_split"].tolist())
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def tfds_config_name(dataset: PreparedDataset) -> str:
    """The dataset's TFDS config name: its name, unless a registered config of that name describes
    other data (format, indexing, seed); then `<name>_<indexing>_seed<seed>`, so that
    `tfds.builder("recjax_dataset/<config>")` never pairs these files with another config."""
    name = config_name(dataset.name)
    registered = RecjaxDataset.builder_configs.get(name)
    if registered is None or (registered.source_format, registered.indexing, registered.seed) == (
            dataset.source_format, dataset.indexing, dataset.seed):
        return name
    return f"{name}_{dataset.indexing}_seed{dataset.seed}"


def tfds_folder(directory: str, dataset: PreparedDataset) -> str:
    return os.path.join(directory, "tfds", RecjaxDataset.name, tfds_config_name(dataset), str(RecjaxDataset.VERSION))


def write_tfds(dataset: PreparedDataset, directory: str, log=None) -> str:
    """Write `dataset` as a TFDS dataset folder directory/tfds/recjax_dataset/<config>/1.0.0 and
    return it. Same files as `RecjaxDataset.download_and_prepare` (one TFRecord shard per split,
    dataset_info.json, features.json, metadata.json with the item catalog), written directly with
    TFDS's `folder_dataset.write_metadata`: TFDS's per-example Python encoding made Beauty take
    ~45 s, this takes a few. No network access."""
    import tensorflow as tf

    folder = tfds_folder(directory, dataset)
    os.makedirs(folder)
    with_ratings = HAS_RATINGS[dataset.source_format]
    template = tfds.core.ShardedFileTemplate(data_dir=epath.Path(folder), dataset_name=RecjaxDataset.name, filetype_suffix="tfrecord")
    split_infos = []
    for split, end in SPLIT_ENDS.items():
        split_template = template.replace(split=split)
        path = os.fspath(split_template.sharded_filepath(shard_index=0, num_shards=1))
        with tf.io.TFRecordWriter(path) as writer:
            for u in tqdm.trange(dataset.num_users, desc=f"TFDS {split}", unit=" users", leave=False, disable=log is None):
                writer.write(_tf_example(user_example(dataset, u, end, with_ratings)))
        split_infos.append(tfds.core.SplitInfo(name=split, shard_lengths=[dataset.num_users], num_bytes=os.path.getsize(path),
                                               filename_template=split_template))
    metadata = tfds.core.MetadataDict()
    metadata.update(catalog_metadata(dataset))
    tfds.folder_dataset.write_metadata(
        data_dir=folder, features=features_for(dataset.source_format), split_infos=split_infos,
        filename_template=template, check_data=False, metadata=metadata, homepage=HOMEPAGE, disable_shuffling=True,
        description=f"recjax prepared dataset {dataset.name!r} ({dataset.source_format}, {dataset.indexing} indexing, seed {dataset.seed})",
    )
    return folder


def build_with_tfds_builder(dataset: PreparedDataset, directory: str) -> str:
    """The same dataset written by TFDS's own machinery (`RecjaxDataset.download_and_prepare`);
    slow on big data, kept to check `write_tfds` against. Returns the dataset folder."""
    name = tfds_config_name(dataset)
    if name in RecjaxDataset.builder_configs:
        config = name
    else:
        config = RecjaxDatasetConfig(name=name, source_format=dataset.source_format, indexing=dataset.indexing,
                                     seed=dataset.seed,
                                     description=f"{dataset.name} ({dataset.source_format}, {dataset.indexing} indexing)")
    builder = RecjaxDataset(prepared=dataset, data_dir=os.path.join(directory, "tfds"), config=config)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return os.fspath(builder.data_path)
