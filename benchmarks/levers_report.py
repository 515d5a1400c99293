"""Validation NDCG@10 against next-item windows seen and training time, for the recipe's form and
the compact form (#22 item 5; RESULTS.md), from the runs' metrics.jsonl.

    python benchmarks/levers_report.py --runs recipe=runs/levers/recipe compact=runs/levers/compact \
        --plot benchmarks/levers_curves.png

Windows seen at step s: the sum over logged train rows up to s of log_period x examples per step
(the logged examples/s over steps/s: exact for a packed retrieval-only stream), times the
retrieval share for a mixture (--retrieval_share NAME=0.5: the recipe's rate 1:1, in expectation).
Training seconds: the same sum of log_period / steps_per_sec (evaluations excluded).
"""
from __future__ import annotations

import argparse
import json

import numpy as np

KEY = "beauty_retrieval/ndcg@10"


def curve(path: str, share: float) -> tuple[list[tuple[int, float, float, float]], int]:
    """[(step, windows seen, training seconds, validation NDCG@10)] and the log period."""
    rows = [json.loads(line) for line in open(f"{path}/metrics.jsonl") if line.strip()]
    train = [r for r in rows if r["split"] == "train"]
    period = train[1]["step"] - train[0]["step"]
    steps = np.array([r["step"] for r in train])
    windows = np.cumsum([period * r["examples_per_sec"] / r["steps_per_sec"] * share for r in train])
    seconds = np.cumsum([period / r["steps_per_sec"] for r in train])
    out = []
    for r in rows:
        if r["split"] == "validation" and KEY in r:
            i = int(np.searchsorted(steps, r["step"]))
            out.append((r["step"], float(windows[i]), float(seconds[i]), r[KEY]))
    return out, period


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, help="NAME=MODEL_DIR")
    p.add_argument("--retrieval_share", nargs="*", default=["recipe=0.5"], help="NAME=share of windows")
    p.add_argument("--plot", default=None)
    args = p.parse_args()
    shares = {k: float(v) for k, v in (s.split("=") for s in args.retrieval_share)}
    curves = {}
    for spec in args.runs:
        name, path = spec.split("=")
        curves[name], _ = curve(path, shares.get(name, 1.0))
    for name, points in curves.items():
        print(f"\n{name}:\n| step | windows seen | training s | validation NDCG@10 |\n|---|---|---|---|")
        for step, windows, seconds, ndcg in points:
            print(f"| {step:,} | {windows:,.0f} | {seconds:,.0f} | {ndcg:.4f} |")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for name, points in curves.items():
            _, windows, seconds, ndcg = zip(*points)
            axes[0].plot(windows, ndcg, marker="o", ms=3, label=name)
            axes[1].plot(np.array(seconds) / 60, ndcg, marker="o", ms=3, label=name)
        axes[0].set_xscale("log")
        axes[0].set_xlabel("next-item windows seen")
        axes[1].set_xlabel("training minutes (2 CPU cores, evaluations excluded)")
        for ax in axes:
            ax.set_ylabel("validation NDCG@10 (1,024 seeded users)")
            ax.grid(alpha=0.3)
            ax.legend()
        fig.suptitle("Beauty, the recipe's T5 (d 128, 2+2): recipe form vs compact form")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"\nwrote {args.plot}")


if __name__ == "__main__":
    main()
