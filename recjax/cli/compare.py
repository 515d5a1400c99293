"""`recjax compare A.jsonl B.jsonl`: paired comparison of two evaluations on the same users.

A and B are `recjax eval --predictions` files (or eval output directories holding
`predictions.jsonl`). For every task both evaluated, on the users both evaluated: each metric's
mean under A and B (runs with different item-ID schemes are matched by the target's original
ID, `target_original_id`), the difference B - A with a paired bootstrap 95% interval (users resampled
with replacement, seeded) and its two-sided bootstrap p-value, and for hit@k / hr@k McNemar's
exact test on the users where exactly one of the two hits; for retrieval, how widely each run's
top-10 lists spread over the items (distinct items shown, effective number of items, the share
of the 10 most-shown). Prints markdown tables; `--plot` draws the differences with their
intervals; `--json` writes every figure ({"paired": [...], "exposure": [...]}).

    recjax compare runs/ids/random/test/predictions.jsonl runs/ids/semantic_rqkmeans/test/predictions.jsonl
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Optional

from recjax import exit_codes
from recjax.data.atomic import atomic_write
from recjax.evaluation.paired import compare, exposure, markdown, plot
from recjax.predictions import read_predictions


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="recjax compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="predictions of run A (JSONL, or an eval output dir holding predictions.jsonl)")
    p.add_argument("b", help="predictions of run B")
    p.add_argument("--samples", type=int, default=10_000, help="bootstrap resamples (default 10,000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", help="write a PNG of the differences with their intervals")
    p.add_argument("--json", help="write every figure as JSON")
    args = p.parse_args(argv)
    try:
        if args.samples < 100:
            raise ValueError(f"--samples must be >= 100, got {args.samples}")
        a, b = read_predictions(args.a), read_predictions(args.b)
        rows, spread = compare(a, b, args.samples, args.seed), exposure(a, b)
    except (ValueError, OSError) as e:
        return exit_codes.report("compare", e)
    print(markdown(rows, args.a, args.b, args.samples, spread))
    if args.plot:
        plot(rows, args.plot, f"B = {os.path.basename(os.path.dirname(os.path.abspath(args.b)))} vs "
                              f"A = {os.path.basename(os.path.dirname(os.path.abspath(args.a)))}")
    if args.json:
        atomic_write(args.json, json.dumps({"paired": rows, "exposure": spread}, indent=2))
    return 0

