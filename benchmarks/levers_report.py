"""Validation NDCG@10 against next-item windows seen and training time, for the recipe's form and
the compact form (#22 item 5; RESULTS.md), from the runs' metrics.jsonl.

    python benchmarks/levers_report.py --runs recipe=runs/levers/recipe compact=runs/levers/compact \
        --plot benchmarks/levers_curves.png

Windows seen and training seconds as benchmarks/convergence_report.py counts them (`curve`), times
the retrieval share for a mixture (--retrieval_share NAME=0.5: the recipe's rate 1:1, in
expectation).
"""
from __future__ import annotations

import argparse

from convergence_report import curve, plot_curves  # benchmarks/ is the script's folder: sys.path[0]


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
        curves[name] = curve(path, shares.get(name, 1.0))
    for name, points in curves.items():
        print(f"\n{name}:\n| step | windows seen | training s | validation NDCG@10 |\n|---|---|---|---|")
        for pt in points:
            print(f"| {pt['step']:,} | {pt['windows']:,.0f} | {pt['seconds']:,.0f} | {pt['ndcg@10']:.4f} |")
    if args.plot:
        plot_curves({name: ([pt["windows"] for pt in points], [pt["seconds"] / 60 for pt in points],
                            [pt["ndcg@10"] for pt in points]) for name, points in curves.items()},
                    args.plot, "next-item windows seen", "validation NDCG@10 (1,024 seeded users)", log_x=True,
                    title="Beauty, the recipe's T5 (d 128, 2+2): recipe form vs compact form")

if __name__ == "__main__":
    main()
