"""Validation NDCG@10 against passes over the training windows and training time, for runs that
may span sessions through exact resume (#23: TIGER and the recipe family at convergence), from
each run's metrics.jsonl.

    python benchmarks/convergence_report.py --runs tiger_beauty=runs/tiger/beauty:data/beauty_semantic_rqvae \
        --plot benchmarks/tiger_curves.png

A run is NAME=MODEL_DIR:DATA_DIR. Windows seen at step s: the sum over logged train rows up to s
of log_period x examples per step (logged examples/s over steps/s; exact for a packed
retrieval-only stream), times --retrieval_share for a mixture. A pass is the dataset's training
windows (every prefix of every user's training sequence). Training seconds: the sum of
log_period / steps_per_sec (evaluations and restarts excluded).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def windows_per_pass(data_dir: str) -> int:
    """Next-item training windows of a prepared dataset: sum over users of len(seq[:-2]) - 1."""
    from recjax.data import load_prepared

    return int(sum(max(len(s) - 1, 0) for s in load_prepared(data_dir).train_sequences()))


def read_metrics(model_dir: str) -> list[dict]:
    """Every row of a run's metrics.jsonl."""
    return [json.loads(line) for line in open(os.path.join(model_dir, "metrics.jsonl")) if line.strip()]


def progress(rows: list[dict], share: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, windows seen, training seconds) [logged train rows], cumulative at each logged step."""
    train = [r for r in rows if r["split"] == "train" and r.get("steps_per_sec")]
    steps = np.array([r["step"] for r in train])
    gaps = np.diff(np.concatenate([[0], steps]))  # steps each logged row covers
    windows = np.cumsum([g * r["examples_per_sec"] / r["steps_per_sec"] * share for g, r in zip(gaps, train)])
    seconds = np.cumsum([g / r["steps_per_sec"] for g, r in zip(gaps, train)])
    return steps, windows, seconds


def curve(model_dir: str, share: float = 1.0, rows: list[dict] | None = None) -> list[dict]:
    """[{step, windows, seconds, ndcg@10, hit@10}] at every validation of the run (`rows`: its
    metrics, read from MODEL_DIR when not given)."""
    rows = read_metrics(model_dir) if rows is None else rows
    steps, windows, seconds = progress(rows, share)
    out = []
    for r in rows:
        key = next((k for k in r if k.endswith("_retrieval/ndcg@10")), None)
        if r["split"] == "validation" and key:
            i = min(int(np.searchsorted(steps, r["step"])), len(steps) - 1)
            out.append({"step": r["step"], "windows": float(windows[i]), "seconds": float(seconds[i]),
                        "ndcg@10": r[key], "hit@10": r[key.replace("ndcg@10", "hit@10")]})
    return out


def plot_curves(curves: dict, path: str, xlabel: str, ylabel: str, log_x: bool = False, title: str | None = None):
    """Two panels, validation NDCG@10 against `xlabel` (windows or passes) and against training
    minutes; `curves` is {name: (x, minutes, ndcg)}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, (x, minutes, ndcg) in curves.items():
        axes[0].plot(x, ndcg, marker="o", ms=3, label=name)
        axes[1].plot(minutes, ndcg, marker="o", ms=3, label=name)
    if log_x:
        axes[0].set_xscale("log")
    axes[0].set_xlabel(xlabel)
    axes[1].set_xlabel("training minutes (2 CPU cores, evaluations excluded)")
    for ax in axes:
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"\nwrote {path}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, help="NAME=MODEL_DIR:DATA_DIR")
    p.add_argument("--retrieval_share", nargs="*", default=[], help="NAME=share of examples that are retrieval windows")
    p.add_argument("--plot", default=None)
    args = p.parse_args(argv)
    shares = {k: float(v) for k, v in (s.split("=") for s in args.retrieval_share)}
    curves = {}
    for spec in args.runs:
        name, paths = spec.split("=", 1)
        model_dir, data_dir = paths.split(":")
        per_pass = windows_per_pass(data_dir)
        curves[name] = (curve(model_dir, shares.get(name, 1.0)), per_pass)
    for name, (points, per_pass) in curves.items():
        print(f"\n{name} ({per_pass:,} training windows a pass):\n"
              "| step | windows seen | passes | training min | validation NDCG@10 | hit@10 |\n|---|---|---|---|---|---|")
        for pt in points:
            print(f"| {pt['step']:,} | {pt['windows']:,.0f} | {pt['windows'] / per_pass:.2f} | {pt['seconds'] / 60:.0f} | "
                  f"{pt['ndcg@10']:.4f} | {pt['hit@10']:.4f} |")
    if args.plot:
        plot_curves({name: ([pt["windows"] / per_pass for pt in points], [pt["seconds"] / 60 for pt in points],
                            [pt["ndcg@10"] for pt in points]) for name, (points, per_pass) in curves.items()},
                    args.plot, "passes over the training windows", "validation NDCG@10 (seeded users)")

if __name__ == "__main__":
    main()
