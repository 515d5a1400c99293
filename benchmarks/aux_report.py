"""The paper's comparison at the CPU recipe: recommendation tasks alone (rec) against rec + MIM +
MLM + BPR (aux), same model, steps and batch, several training seeds (RESULTS.md, issue 13).

    python benchmarks/aux_report.py [--runs runs/aux] [--data data/beauty_collaborative] \
        [--plot benchmarks/aux_curves.png]

Reads runs/aux/{rec,aux}_s<seed>/test_{retrieval,ranking}/predictions.jsonl (`recjax eval
--predictions` on the whole test split; rec_s0's retrieval is the recipe's test_full/) and the
training logs; prints per-run metrics with popularity on the same users, each seed's paired
comparison (bootstrap 95% CI, McNemar for hits), the mean over seeds, and writes the curves.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ids_report import finish_plot, hit_curve, popularity_rows  # noqa: E402

from recjax.evaluation import paired as compare  # noqa: E402
from recjax.predictions import kind_of, read_predictions  # noqa: E402
from recjax.data import load_prepared  # noqa: E402
from recjax.metrics import per_user_from_ranks  # noqa: E402

CONDITIONS = {"rec": "rec (retrieval + ranking)", "aux": "rec + MIM + MLM + BPR"}
# Mixture rates 1.0 per task: rec draws 1/2 of its examples from retrieval, aux 1/5.
RETRIEVAL_SHARE = {"rec": 1 / 2, "aux": 1 / 5}
METRICS = {"retrieval": ("hit@10", "ndcg@10"), "ranking": ("hr@1", "ndcg@10")}


def load_run(directory: str) -> dict[str, dict[int, dict]]:
    rows = {}
    for sub in ("test_retrieval", "test_full", "test_ranking"):
        path = os.path.join(directory, sub, "predictions.jsonl")
        if os.path.isfile(path):
            for task, by_user in read_predictions(path).items():
                rows.setdefault(task, by_user)
    return rows


def means(rows: dict[int, dict], kind: str) -> dict[str, float]:
    return {k: float(v.mean()) for k, v in per_user_from_ranks([r["target_rank"] for r in rows.values()], kind).items()}


def train_info(directory: str) -> dict:
    path = os.path.join(directory, "metrics.jsonl")
    rows = [json.loads(line) for line in open(path) if line.strip()] if os.path.isfile(path) else []
    train = [r for r in rows if r.get("split") == "train"]
    return {"steps": max((r["step"] for r in train), default=0), "curve": [(r["step"], r["loss"]) for r in train]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="runs/aux")
    p.add_argument("--data", default="data/beauty_collaborative")
    p.add_argument("--plot", default="benchmarks/aux_curves.png")
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--batch_size", type=int, default=32)
    args = p.parse_args()
    dataset = load_prepared(args.data)
    runs = {}
    for cond in CONDITIONS:
        for seed in range(10):
            directory = os.path.join(args.runs, f"{cond}_s{seed}")
            rows = load_run(directory) if os.path.isdir(directory) else {}
            if rows:
                for by_user in rows.values():
                    for row in by_user.values():
                        row.setdefault("target_original_id",
                                       dataset.item_original_ids[dataset.item_index(row["target"])])
                runs[(cond, seed)] = {"rows": rows, "train": train_info(directory)}
    if not runs:
        print(f"no evaluated runs under {args.runs}", file=sys.stderr)
        return 1
    widest = max(runs.values(), key=lambda run: len(run["rows"]))["rows"]  # every run: the same users, candidates
    pop = popularity_rows(dataset, widest)

    print("| run | seed | retrieval examples seen (expected) | task | users | hit@10 / hr@1 | ndcg@10 |")
    print("|---|---|---|---|---|---|---|")
    for task in sorted(pop):
        kind = kind_of(pop[task])
        m = means(pop[task], kind)
        print(f"| popularity | - | - | {kind} | {len(pop[task]):,} | {m[METRICS[kind][0]]:.4f} | {m['ndcg@10']:.4f} |")
    for (cond, seed), run in sorted(runs.items()):
        seen = run["train"]["steps"] * args.batch_size * RETRIEVAL_SHARE[cond]
        for task in sorted(run["rows"]):
            kind = kind_of(run["rows"][task])
            m = means(run["rows"][task], kind)
            print(f"| {CONDITIONS[cond]} | {seed} | {seen:,.0f} | {kind} | {len(run['rows'][task]):,} | "
                  f"{m[METRICS[kind][0]]:.4f} | {m['ndcg@10']:.4f} |")

    print("\nMean over seeds (± standard deviation over seeds):\n")
    print("| run | seeds | task | hit@10 / hr@1 | ndcg@10 |")
    print("|---|---|---|---|---|")
    for cond in CONDITIONS:
        seeds = sorted(s for c, s in runs if c == cond)
        for kind in ("retrieval", "ranking"):
            values = [means(rows, kind) for s in seeds for t, rows in runs[(cond, s)]["rows"].items()
                      if kind_of(rows) == kind]
            if values:
                cells = [f"{np.mean([v[k] for v in values]):.4f} ± {np.std([v[k] for v in values]):.4f}"
                         for k in METRICS[kind]]
                print(f"| {CONDITIONS[cond]} | {len(values)} | {kind} | " + " | ".join(cells) + " |")

    print("\nPaired differences (aux - rec) on the same users, per training seed; 95% CI by paired bootstrap "
          f"({args.samples:,} resamples of the users), McNemar for hits:\n")
    print("| seed | task | metric | rec | aux | aux - rec | 95% CI | p (bootstrap) | McNemar rec-only / aux-only, p |")
    print("|---|---|---|---|---|---|---|---|---|")
    diffs: dict[tuple[str, str], list[float]] = {}
    for seed in sorted({s for c, s in runs if c == "rec"} & {s for c, s in runs if c == "aux"}):
        for r in compare.compare(runs[("rec", seed)]["rows"], runs[("aux", seed)]["rows"], args.samples):
            kind = r["kind"]
            if r["metric"] not in METRICS[kind]:
                continue
            diffs.setdefault((kind, r["metric"]), []).append(r["diff"])
            mc = f"{r['only_a']} / {r['only_b']}, {r['p_mcnemar']:.2g}" if "p_mcnemar" in r else "-"
            print(f"| {seed} | {kind} | {r['metric']} | {r['a']:.4f} | {r['b']:.4f} | {r['diff']:+.4f} | "
                  f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | {compare.format_p(r['p_bootstrap'], args.samples)} | {mc} |")
    if diffs:
        print("\n| task | metric | seeds | mean aux - rec | differences per seed |")
        print("|---|---|---|---|---|")
        for (kind, metric), values in sorted(diffs.items()):
            print(f"| {kind} | {metric} | {len(values)} | {np.mean(values):+.4f} | "
                  + ", ".join(f"{v:+.4f}" for v in values) + " |")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_hit) = plt.subplots(1, 2, figsize=(11, 4))
    colors = {"rec": "tab:blue", "aux": "tab:orange"}
    for (cond, seed), run in sorted(runs.items()):
        steps, losses = zip(*run["train"]["curve"]) if run["train"]["curve"] else ((), ())
        ax_loss.plot(steps, losses, color=colors[cond], lw=1, alpha=0.8, label=f"{cond} seed {seed}")
        task = next((t for t in run["rows"] if kind_of(run["rows"][t]) == "retrieval"), None)
        if task:
            ax_hit.plot(range(1, 21), hit_curve(run["rows"][task]), color=colors[cond], label=f"{cond} seed {seed}")
    task = next(t for t in pop if kind_of(pop[t]) == "retrieval")
    ax_hit.plot(range(1, 21), hit_curve(pop[task]), "k--", label="popularity")
    ax_loss.set(xlabel="step", ylabel="train loss per target token", title="training (aux: loss over all 5 tasks)")
    ax_hit.set(xlabel="k", ylabel="test hit@k (22,363 users)", title="retrieval over all items (beam 20)")
    finish_plot(fig, (ax_loss, ax_hit), args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
