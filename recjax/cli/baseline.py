"""`recjax baseline`: train and evaluate a conventional recommender on a prepared dataset.

    recjax baseline --model sasrec --data_dir DATA --out OUT \
        [--gin_file baselines/sasrec.gin ...] [--gin.KEY=VALUE ...] [--overwrite]

Models: popularity (train-split counts), sasrec, bert4rec; and for rated datasets (MovieLens) the
rating baselines global_mean and item_mean (RMSE/MAE on P5's rating split, see
recjax/baselines/rating_means.py). Without --gin_file the model's file in gin/baselines/ is used. Model selection on the leave-one-out validation split (best NDCG@10),
metrics of the selected parameters on the test split; both by full ranking over ALL items with the
user's history items excluded. OUT (written under a temporary name, then renamed) gets:
metrics.json, report.md, config.gin (gin's operative config) and checkpoint/ (orbax, neural models).
"""
from __future__ import annotations

import argparse
import sys


from recjax import gin_utils
from recjax.baselines.run import MODELS, RATING_MODELS, run

def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str], list[str], list[str]]:
    """-> (flags, gin files, gin bindings, gin search paths); T5X-style gin flags via gin_utils."""
    try:
        files, bindings, search, rest = gin_utils.split_gin_flags(argv)
    except gin_utils.GinFlagError as e:
        raise SystemExit(f"recjax baseline: {e}") from None
    parser = argparse.ArgumentParser(prog="recjax baseline", description=__doc__.split("\n\n")[0],
                                     epilog="Gin: --gin_file=F (repeatable; a path or relative to the "
                                            "repo's gin/, default baselines/MODEL.gin), --gin.KEY=VALUE "
                                            "(repeatable), --gin_search_path=DIR.")
    parser.add_argument("--model", required=True, choices=MODELS)
    parser.add_argument("--data_dir", required=True, help="a prepared dataset (`recjax prepare`)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    return parser.parse_args(rest), files, bindings, search


def parse_gin(model: str, gin_files: list[str], bindings: list[str], search_paths: list[str] = ()) -> None:
    """Parse the gin files and bindings; an unknown file/configurable/parameter -> SystemExit."""
    # Register every configurable first so that a misspelt binding fails here, before any work.
    from recjax.baselines import bert4rec, popularity, sasrec, train_loop  # noqa: F401
    try:
        gin_utils.parse_gin(gin_files or [f"baselines/{model}.gin"], bindings, search_paths)
    except gin_utils.GinFlagError as e:
        raise SystemExit(f"recjax baseline: {e}") from None


def main(argv: list[str] | None = None) -> int:
    args, files, bindings, search = parse_args(list(sys.argv[1:] if argv is None else argv))
    parse_gin(args.model, files, bindings, search)
    try:
        result = run(args.model, args.data_dir, args.out, overwrite=args.overwrite, progress=not args.no_progress)
    except ValueError as e:
        raise SystemExit(f"recjax baseline: {e}") from None
    t = result["test"]
    if args.model in RATING_MODELS:
        print(f"{args.model} test: rmse {t['rmse']:.4f}  mae {t['mae']:.4f}  ({t['num_examples']} ratings)  -> {args.out}")
        return 0
    print(f"{args.model} test: hit@5 {t['hit@5']:.4f}  hit@10 {t['hit@10']:.4f}  "
          f"ndcg@5 {t['ndcg@5']:.4f}  ndcg@10 {t['ndcg@10']:.4f}  -> {args.out}")
    return 0

