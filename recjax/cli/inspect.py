"""`recjax inspect`: rendered examples and token-length percentiles of a SeqIO task or mixture.

    recjax inspect --gin_file=gin/tasks/beauty.gin --gin.DATA_DIR="'data/beauty'" \
        --task=beauty_ranking -n 3 [--split=validation] [--inputs_length=512 --targets_length=32]

Prints N examples (text and token counts) of each task (every member of a mixture), then the
token-length percentiles of inputs and targets (with EOS) over a seeded sample, and how many
examples the chosen feature lengths would truncate. Feature lengths default to the Gin macro
TASK_FEATURE_LENGTHS when a Gin file binds it, and the task to the TASK_NAME macro.
"""
from __future__ import annotations

import argparse
import sys

from recjax.task_inspection import inspect_task

DEFAULT_LENGTHS = {"inputs": 512, "targets": 32}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recjax inspect", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", help="task or mixture name (default: the TASK_NAME Gin macro)")
    p.add_argument("-n", "--num_examples", type=int, default=3, help="examples printed per task")
    p.add_argument("--split", default="train", choices=("train", "validation", "test"))
    p.add_argument("--inputs_length", type=int, help="inputs feature length (default: TASK_FEATURE_LENGTHS or 512)")
    p.add_argument("--targets_length", type=int, help="targets feature length (default: TASK_FEATURE_LENGTHS or 32)")
    p.add_argument("--stats_examples", type=int, default=2000,
                   help="examples per task for the percentiles (0: one whole epoch)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample (and of its masks and negatives)")
    return p


def _macro(name: str):
    import gin

    try:
        return gin.query_parameter(f"%{name}")
    except ValueError:
        return None


def _feature_lengths(args) -> dict[str, int]:
    lengths = dict(DEFAULT_LENGTHS)
    bound = _macro("TASK_FEATURE_LENGTHS")
    if isinstance(bound, dict):
        lengths.update({k: int(v) for k, v in bound.items() if k in lengths})
    if args.inputs_length:
        lengths["inputs"] = args.inputs_length
    if args.targets_length:
        lengths["targets"] = args.targets_length
    return lengths


def run(argv: list[str]) -> int:
    from recjax import gin_utils

    files, bindings, search, rest = gin_utils.split_gin_flags(argv)
    args = _parser().parse_args(rest)
    if not files:
        raise ValueError("--gin_file is required (e.g. gin/tasks/beauty.gin)")
    gin_utils.parse_gin(files, bindings, search)

    import seqio

    import tasks

    tasks.register_dataset()  # with the Gin file's bindings
    name = args.task or _macro("TASK_NAME")
    if not name:
        raise ValueError("--task is required (the Gin files bind no TASK_NAME)")
    provider = tasks.get_mixture_or_task(name)
    lengths = _feature_lengths(args)
    members = provider.tasks if isinstance(provider, seqio.Mixture) else [provider]
    if isinstance(provider, seqio.Mixture):
        rates = {t.name: provider.get_rate(t) for t in members}
        total = sum(rates.values())
        print(f"mixture {name}: " + ", ".join(f"{t} {r / total:.1%}" for t, r in rates.items()))
    for task in members:
        inspect_task(task, args.split, args.num_examples, args.stats_examples, args.seed, lengths)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return run(argv)
    except (ValueError, FileNotFoundError, KeyError, OSError) as e:
        # gin appends "In call to configurable ..." lines: keep the first, the actual error.
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"recjax inspect: error: {message}", file=sys.stderr)
        return 2

