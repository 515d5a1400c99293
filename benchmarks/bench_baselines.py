"""Popularity, SASRec and BERT4Rec on real Beauty (P5 / S3-Rec 5-core split), each through
`recjax baseline` with its published gin file plus a training-time budget, next to the published
figures on the same split.

    python benchmarks/bench_baselines.py [--data_dir PREPARED] [--work DIR] [--runs popularity,sasrec,...]

Without --data_dir, Beauty is prepared from ../shared/data/beauty (`recjax prepare --format p5`).
Prints one markdown table (test split, full ranking over all 12,101 items, history excluded) with
wall time per run and ratios to the published numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_BEAUTY = REPO.parent / "shared" / "data" / "beauty"

# Published test figures on the same Beauty split (leave-one-out, full ranking), as reported in
# TIGER (Rajput et al., NeurIPS 2023), Table 1. Recall@10 = Hit@10 with one relevant item.
PUBLISHED = {
    "sasrec": {"hit@10": 0.0605, "ndcg@10": 0.0318},
    "bert4rec": {"hit@10": 0.0347, "ndcg@10": 0.0170},
}

# name -> (model, extra gin bindings). The published gin files, cut to a wall-time budget that fits
# this 2-core shared machine (~15 min per run): see benchmarks/RESULTS.md.
RUNS = {
    "popularity": ("popularity", []),
    "sasrec": ("sasrec", ["--gin.train_and_evaluate.max_train_seconds=600",
                          "--gin.train_and_evaluate.eval_every_epochs=10"]),
    "bert4rec": ("bert4rec", ["--gin.train_and_evaluate.max_train_seconds=660",
                              "--gin.train_and_evaluate.eval_every_epochs=1"]),
    # Beyond the 15-min budget: how far SASRec gets with 30 min of training.
    "sasrec_30min": ("sasrec", ["--gin.train_and_evaluate.max_train_seconds=1800",
                                "--gin.train_and_evaluate.eval_every_epochs=10"]),
    # Same model with a 10x learning rate: what BERT4Rec reaches in the budget when its published
    # 1e-4 (tuned for 400k steps) cannot converge.
    "bert4rec_lr1e-3": ("bert4rec", ["--gin.train_and_evaluate.max_train_seconds=660",
                                     "--gin.train_and_evaluate.eval_every_epochs=1",
                                     "--gin.BERT4Rec.learning_rate=1e-3"]),
}


def prepare_beauty(work: pathlib.Path) -> pathlib.Path:
    out = work / "beauty_p5"
    if not (out / "prepared.json").exists():
        cmd = [sys.executable, "-m", "recjax.prepare", "--format", "p5", "--src", str(SHARED_BEAUTY), "--out", str(out)]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", help="a prepared Beauty (default: prepare one in --work)")
    parser.add_argument("--work", default="/tmp/recjax_bench_baselines")
    parser.add_argument("--runs", default="popularity,sasrec,bert4rec,bert4rec_lr1e-3", help=f"comma-separated subset of {list(RUNS)}")
    args = parser.parse_args()
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = pathlib.Path(args.data_dir) if args.data_dir else prepare_beauty(work)
    rows = []
    for name in args.runs.split(","):
        model, extra = RUNS[name]
        out = work / name
        cmd = [sys.executable, "-m", "recjax.baseline", "--model", model, "--data_dir", str(data),
               "--out", str(out), "--overwrite", "--no_progress", *extra]
        print("$", " ".join(cmd), flush=True)
        start = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - start
        with open(out / "metrics.json") as f:
            result = json.load(f)
        rows.append((name, result, wall))
        print(f"{name}: test {json.dumps(result['test'])} wall {wall:.0f} s", flush=True)

    print("\n| run | test hit@5 | hit@10 | ndcg@5 | ndcg@10 | published hit@10 / ndcg@10 | ours / published ndcg@10 "
          "| epochs (selected) | train s | eval s | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r, wall in rows:
        t, tr = r["test"], r["training"]
        pub = PUBLISHED.get(r["model"])
        pub_s = f"{pub['hit@10']:.4f} / {pub['ndcg@10']:.4f}" if pub else "-"
        ratio = f"{t['ndcg@10'] / pub['ndcg@10']:.2f}" if pub else "-"
        print(f"| {name} | {t['hit@5']:.4f} | {t['hit@10']:.4f} | {t['ndcg@5']:.4f} | {t['ndcg@10']:.4f} | {pub_s} "
              f"| {ratio} | {tr['epochs_run']} ({tr['best_epoch']}) | {tr['train_seconds']:.0f} "
              f"| {tr['eval_seconds']:.0f} | {wall:.0f} |")
    print(f"\n{os.cpu_count()} CPU cores; stop reasons: " +
          "; ".join(f"{n}: {r['training']['stopped_because']}" for n, r, _ in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
