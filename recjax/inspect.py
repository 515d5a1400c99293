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

PERCENTILES = (50, 90, 95, 99, 100)
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


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def inspect_task(task, split: str, num_examples: int, stats_examples: int, seed: int,
                 lengths: dict[str, int], out=sys.stdout) -> dict:
    """Prints examples and length statistics of one seqio Task; returns the statistics."""
    import numpy as np

    import tasks

    kind = tasks.task_kind(task.name)
    per_epoch = task.source.num_examples(split)
    print(f"== {task.name} ({split}): {per_epoch:,} examples per epoch", file=out)
    # Untrimmed, so the lengths are the real ones; user order seeded, no shuffle buffer to fill.
    ds = task.get_dataset(sequence_length=None, split=split, shuffle=True, shuffle_buffer_size=1,
                          seed=seed, num_epochs=1, trim_output_features=False)
    limit = per_epoch if stats_examples <= 0 else min(stats_examples, per_epoch)
    input_lengths, target_lengths = [], []
    for i, ex in enumerate(ds.take(limit).as_numpy_iterator()):
        input_lengths.append(len(ex["inputs"]))
        target_lengths.append(len(ex["targets"]))
        if i < num_examples:
            print(f"-- example {i + 1} [{_text(ex['template'])}] inputs {len(ex['inputs'])} tokens, "
                  f"targets {len(ex['targets'])} tokens", file=out)
            print(f"inputs:  {_text(ex['inputs_pretokenized'])}", file=out)
            print(f"targets: {_text(ex['targets_pretokenized'])}", file=out)
    stats = {"task": task.name, "kind": kind, "split": split, "examples": len(input_lengths)}
    print(f"token lengths (with EOS) over {len(input_lengths):,} examples:", file=out)
    print("           " + "".join(f"{('p' + str(q)) if q < 100 else 'max':>7}" for q in PERCENTILES), file=out)
    for feature, values in (("inputs", input_lengths), ("targets", target_lengths)):
        values = np.asarray(values)
        pct = np.percentile(values, PERCENTILES).round().astype(int) if len(values) else [0] * len(PERCENTILES)
        truncated = int((values > lengths[feature]).sum())
        stats[feature] = {"percentiles": dict(zip(PERCENTILES, map(int, pct))), "truncated": truncated}
        print(f"  {feature:<8} " + "".join(f"{v:>7}" for v in pct), file=out)
    share = lambda n: f"{n:,} ({100.0 * n / max(len(input_lengths), 1):.2f}%)"  # noqa: E731
    print(f"truncated at inputs={lengths['inputs']}: {share(stats['inputs']['truncated'])}, "
          f"targets={lengths['targets']}: {share(stats['targets']['truncated'])}", file=out)
    return stats


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


if __name__ == "__main__":
    sys.exit(main())
