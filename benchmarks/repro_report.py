"""Tables and training curves of the CPU reproduction (gin/repro/), for benchmarks/RESULTS.md.

Reads what the reproduction's commands wrote (RESULTS.md lists them):
  runs/repro/beauty_cpu_{rec,rec_aux}/test/metrics.json   `recjax eval` on beauty_retrieval, test
  runs/repro/ml100k_cpu_rating/test/metrics.json          `recjax eval` on ml100k_rating, test
  runs/repro/*/metrics.jsonl                              the training logs
and computes the baselines on the same examples: popularity (train-split counts, history
excluded) on exactly the test users the T5 evaluation saw (it reads users in index order, so
`max_examples = N` means users 0..N-1), and the global-mean / item-mean rating baselines
(recjax/baselines/rating_means.py). Prints markdown tables; writes the curves to --plot.

    python benchmarks/repro_report.py [--runs runs/repro] [--plot benchmarks/repro_curves.png]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

RETRIEVAL = ("hit@5", "hit@10", "ndcg@5", "ndcg@10", "valid_id_rate")


def read_json(path: str) -> dict:
    if not os.path.isfile(path):
        raise SystemExit(f"repro_report: {path}: missing (run the reproduction's commands in benchmarks/RESULTS.md)")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def task_result(path: str, task: str) -> dict:
    doc = read_json(path)
    if task not in doc["tasks"]:
        raise SystemExit(f"repro_report: {path}: no task {task!r} (has {sorted(doc['tasks'])})")
    return doc["tasks"][task]


def read_curve(path: str) -> tuple[np.ndarray, np.ndarray]:
    steps, losses = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row.get("split") == "train" and "loss" in row:
                steps.append(row["step"])
                losses.append(row["loss"])
    return np.asarray(steps), np.asarray(losses)


def popularity_on_first_users(data_dir: str, num_users: int) -> dict[str, float]:
    from recjax.baselines.evaluate import full_ranking_metrics
    from recjax.baselines.popularity import Popularity
    from recjax.data import load_prepared

    ds = load_prepared(data_dir)
    model = Popularity(ds.num_items).fit(ds.train_sequences())
    histories, targets = ds.loo_split("test")
    return full_ranking_metrics(lambda rows: model.scores(len(rows)), histories[:num_users], targets[:num_users],
                                ds.num_items)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs/repro")
    parser.add_argument("--beauty", default="data/beauty", help="the prepared Beauty dataset")
    parser.add_argument("--ml", default="data/ml100k", help="the prepared MovieLens-100k dataset")
    parser.add_argument("--plot", default="benchmarks/repro_curves.png")
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from recjax.baselines.rating_means import fit_and_evaluate
    from recjax.data import load_prepared

    rows, users = [], set()
    for run in ("beauty_cpu_rec", "beauty_cpu_rec_aux"):
        r = task_result(os.path.join(args.runs, run, "test", "metrics.json"), "beauty_retrieval")
        users.add(r["num_examples"])
        rows.append((run.replace("beauty_cpu_", "T5 from scratch, "), r["metrics"], r["num_examples"]))
    if len(users) != 1:
        raise SystemExit(f"repro_report: the two Beauty evaluations saw different numbers of users: {sorted(users)}")
    n = users.pop()
    rows.insert(0, ("popularity", popularity_on_first_users(args.beauty, n), n))
    print(f"Beauty, test split, retrieval over all 12,101 items (beam 20, constrained, history excluded), "
          f"first {n:,} users:\n")
    print("| model | " + " | ".join(RETRIEVAL) + " |\n|---" * 1 + "|---" * len(RETRIEVAL) + "|")
    for name, m, _ in rows:
        print(f"| {name} | " + " | ".join(f"{m.get(k, 1.0 if k == 'valid_id_rate' else float('nan')):.4f}"
                                          for k in RETRIEVAL) + " |")

    ml = task_result(os.path.join(args.runs, "ml100k_cpu_rating", "test", "metrics.json"), "ml100k_rating")
    ml_data = load_prepared(args.ml)
    means = [fit_and_evaluate(name, ml_data)["test"] for name in ("global_mean", "item_mean")]
    print(f"\nMovieLens-100k, rating test split ({ml['num_examples']:,} ratings):\n")
    print("| model | rmse | mae |\n|---|---|---|")
    print(f"| global mean | {means[0]['rmse']:.4f} | {means[0]['mae']:.4f} |")
    print(f"| item mean | {means[1]['rmse']:.4f} | {means[1]['mae']:.4f} |")
    m = ml["metrics"]
    print(f"| T5 from scratch (expected rating over the tokens 1-5) | {m['rmse']:.4f} | {m['mae']:.4f} |")
    if "generated_rmse" in m:
        print(f"| T5 from scratch (generated rating; parse rate {m['generated_parse_rate']:.3f}) | "
              f"{m['generated_rmse']:.4f} | {m['generated_mae']:.4f} |")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for run, label in (("beauty_cpu_rec", "Beauty: rec (retrieval + ranking)"),
                       ("beauty_cpu_rec_aux", "Beauty: rec + MIM + MLM + BPR")):
        steps, losses = read_curve(os.path.join(args.runs, run, "metrics.jsonl"))
        axes[0].plot(steps, losses, label=label)
    steps, losses = read_curve(os.path.join(args.runs, "ml100k_cpu_rating", "metrics.jsonl"))
    axes[1].plot(steps, losses, label="MovieLens-100k: rating", color="C2")
    for ax, title in zip(axes, ("Beauty (mixture loss, each run's own tasks)", "MovieLens-100k rating")):
        ax.set_xlabel("step")
        ax.set_ylabel("train loss (per target token)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    tmp = args.plot + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, args.plot)
    print(f"\ncurves -> {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
