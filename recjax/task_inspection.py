"""Rendered examples and token-length percentiles of a SeqIO task (what `recjax inspect` prints),
and how many examples given feature lengths would truncate."""
from __future__ import annotations

import sys

PERCENTILES = (50, 90, 95, 99, 100)


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
