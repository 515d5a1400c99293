"""The paper's comparison: recommendation tasks alone (rec) against rec + MIM + MLM + BPR (aux),
same model, steps and batch, several training seeds; and the control that trains aux until it has
seen rec's retrieval windows (aux_equal). At the CPU recipe (issue 13, runs/aux) and at the
convergent budget of gin/repro/claim (issue 23, runs/claim).

    python benchmarks/aux_report.py [--runs runs/aux] [--data data/beauty_collaborative] \
        [--plot benchmarks/aux_curves.png]
    python benchmarks/aux_report.py --runs runs/claim --plot benchmarks/claim_curves.png
    python benchmarks/aux_report.py --runs runs/claim --test_dir test_last --plot benchmarks/claim_last_curves.png

Reads RUNS/{rec,aux,aux_equal,mim,mlm,bpr}_s<seed>/test*/predictions.jsonl (`recjax eval --predictions` on
the whole test split: test/ for a mixture, or test_retrieval/ + test_ranking/) and each run's
metrics.jsonl; prints per-run metrics with popularity on the same users, each seed's paired
comparison against rec (bootstrap 95% CI, McNemar for hits), the mean over seeds, and plots
validation NDCG@10 against retrieval windows seen (training loss where a run has no validation)
and the test hit@k curves.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from convergence_report import curve as validation_curve, progress, read_metrics  # noqa: E402
from ids_report import finish_plot, hit_curve, popularity_rows  # noqa: E402

from recjax.evaluation import paired as compare  # noqa: E402
from recjax.predictions import kind_of, read_predictions  # noqa: E402
from recjax.data import load_prepared  # noqa: E402
from recjax.metrics import per_user_from_ranks  # noqa: E402

CONDITIONS = {"rec": "rec (retrieval + ranking)", "aux": "rec + MIM + MLM + BPR",
              "aux_equal": "rec + MIM + MLM + BPR, rec's retrieval windows",
              "mim": "rec + MIM", "mlm": "rec + MLM", "bpr": "rec + BPR"}
# Mixture rates 1.0 per task: rec draws 1/2 of its examples from retrieval, aux 1/5, one task alone 1/3.
RETRIEVAL_SHARE = {"rec": 1 / 2, "aux": 1 / 5, "aux_equal": 1 / 5, "mim": 1 / 3, "mlm": 1 / 3, "bpr": 1 / 3}
METRICS = {"retrieval": ("hit@10", "ndcg@10"), "ranking": ("hr@1", "ndcg@10")}


BEST = ("test", "test_retrieval", "test_full", "test_ranking")  # the best step on validation


def load_run(directory: str, subdirs: tuple[str, ...] = BEST) -> dict[str, dict[int, dict]]:
    rows = {}
    for sub in subdirs:
        path = os.path.join(directory, sub, "predictions.jsonl")
        if os.path.isfile(path):
            for task, by_user in read_predictions(path).items():
                rows.setdefault(task, by_user)
    return rows


def means(rows: dict[int, dict], kind: str) -> dict[str, float]:
    return {k: float(v.mean()) for k, v in per_user_from_ranks([r["target_rank"] for r in rows.values()], kind).items()}


def train_info(directory: str, share: float, batch_size: int) -> dict:
    """Steps, retrieval windows seen (from the logged examples a step: packed rows hold several;
    `batch_size` a step for runs that log none), the loss curve, the validation curve and the best step."""
    rows = read_metrics(directory) if os.path.isfile(os.path.join(directory, "metrics.jsonl")) else []
    train = [r for r in rows if r.get("split") == "train"]
    steps = max((r["step"] for r in train), default=0)
    logged = [r for r in train if r.get("steps_per_sec")]
    timed = bool(logged) and all(r.get("examples_per_sec") for r in logged)
    validation = validation_curve(directory, share, rows) if timed else []
    best = os.path.join(directory, "best", "best.json")
    return {"steps": steps, "seen": float(progress(rows, share)[1][-1]) if timed else steps * batch_size * share,
            "curve": [(r["step"], r["loss"]) for r in train], "validation": validation,
            "best_step": json.load(open(best))["step"] if os.path.isfile(best) else None}


def paired_against_rec(runs: dict, cond: str, seeds: list[int], samples: int) -> None:
    """Each seed's paired comparison of `cond` against rec on the same users, the mean over seeds,
    and one paired bootstrap over the seeds pooled: every user's metric averaged over the seeds of
    each arm (seed i of one arm against seed i of the other is no closer a pairing than any other)."""
    print(f"\nPaired differences ({cond} - rec) on the same users, per training seed; 95% CI by paired bootstrap "
          f"({samples:,} resamples of the users), McNemar for hits:\n")
    print(f"| seed | task | metric | rec | {cond} | {cond} - rec | 95% CI | p (bootstrap) | McNemar rec-only / {cond}-only, p |")
    print("|---|---|---|---|---|---|---|---|---|")
    diffs: dict[tuple[str, str], list[float]] = {}
    reported = {m for names in METRICS.values() for m in names}  # bootstraps for these only
    for seed in seeds:
        for r in compare.compare(runs[("rec", seed)]["rows"], runs[(cond, seed)]["rows"], samples, metrics=reported):
            kind = r["kind"]
            if r["metric"] not in METRICS[kind]:
                continue
            diffs.setdefault((kind, r["metric"]), []).append(r["diff"])
            mc = f"{r['only_a']} / {r['only_b']}, {r['p_mcnemar']:.2g}" if "p_mcnemar" in r else "-"
            print(f"| {seed} | {kind} | {r['metric']} | {r['a']:.4f} | {r['b']:.4f} | {r['diff']:+.4f} | "
                  f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | {compare.format_p(r['p_bootstrap'], samples)} | {mc} |")
    # The pooled bootstrap resamples users only: it says how sure the difference is for these trained
    # models. Whether it would hold for another training seed is the t-test over the per-seed
    # differences (n - 1 degrees of freedom; little power at 3 seeds, but it counts the seed noise).
    print(f"\n| task | metric | seeds | mean {cond} - rec | differences per seed | pooled over seeds: 95% CI, p "
          f"| t-test over seeds, p |")
    print("|---|---|---|---|---|---|---|")
    for (kind, metric), values in sorted(diffs.items()):
        users = sorted(set.intersection(*(set(task_rows(runs, c, s, kind)) for c in ("rec", cond) for s in seeds)))
        pooled = compare.paired_bootstrap(*(seed_mean(runs, c, seeds, kind, metric, users) for c in ("rec", cond)),
                                          samples)
        print(f"| {kind} | {metric} | {len(values)} | {np.mean(values):+.4f} | " + ", ".join(f"{v:+.4f}" for v in values)
              + f" | [{pooled['ci_low']:+.4f}, {pooled['ci_high']:+.4f}], {compare.format_p(pooled['p_bootstrap'], samples)} "
              f"| {seed_t_test(values)} |")


def seed_t_test(differences: list[float]) -> str:
    """Two-sided one-sample t-test of the per-seed differences against 0."""
    from scipy import stats

    if len(differences) < 2:
        return "-"
    test = stats.ttest_1samp(differences, 0.0)
    return f"{test.pvalue:.2g} (t {test.statistic:+.1f})"


def task_rows(runs: dict, cond: str, seed: int, kind: str) -> dict[int, dict]:
    return next(rows for rows in runs[(cond, seed)]["rows"].values() if kind_of(rows) == kind)


def seed_mean(runs: dict, cond: str, seeds: list[int], kind: str, metric: str, users: list[int]) -> np.ndarray:
    """[users] one metric of the arm's task of `kind`, each user's value averaged over `seeds`."""
    by_seed = [task_rows(runs, cond, s, kind) for s in seeds]
    return np.mean([per_user_from_ranks([rows[u]["target_rank"] for u in users], kind)[metric] for rows in by_seed], 0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="runs/aux")
    p.add_argument("--data", default="data/beauty_collaborative")
    p.add_argument("--plot", default="benchmarks/aux_curves.png")
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--test_dir", default=None,
                   help="read each run's predictions from RUN/TEST_DIR (e.g. test_last: the queue's claim_last, "
                        "every run at its last step) instead of its best-on-validation test directories")
    args = p.parse_args()
    dataset = load_prepared(args.data)
    runs = {}
    for cond in CONDITIONS:
        for seed in range(10):
            directory = os.path.join(args.runs, f"{cond}_s{seed}")
            rows = load_run(directory, (args.test_dir,) if args.test_dir else BEST) if os.path.isdir(directory) else {}
            if rows:
                for by_user in rows.values():
                    for row in by_user.values():
                        row.setdefault("target_original_id",
                                       dataset.item_original_ids[dataset.item_index(row["target"])])
                runs[(cond, seed)] = {"rows": rows, "train": train_info(directory, RETRIEVAL_SHARE[cond],
                                                                          args.batch_size)}
    if not runs:
        print(f"no evaluated runs under {args.runs}", file=sys.stderr)
        return 1
    widest = max(runs.values(), key=lambda run: len(run["rows"]))["rows"]  # every run: the same users, candidates
    pop = popularity_rows(dataset, widest)

    print("| run | seed | steps (best) | retrieval windows seen (expected) | task | users | hit@10 / hr@1 | ndcg@10 |")
    print("|---|---|---|---|---|---|---|---|")
    for task in sorted(pop):
        kind = kind_of(pop[task])
        m = means(pop[task], kind)
        print(f"| popularity | - | - | - | {kind} | {len(pop[task]):,} | {m[METRICS[kind][0]]:.4f} | {m['ndcg@10']:.4f} |")
    for (cond, seed), run in sorted(runs.items()):
        info = run["train"]
        steps = f"{info['steps']:,}" + (f" ({args.test_dir})" if args.test_dir else
                                          f" ({info['best_step']:,})" if info["best_step"] else "")
        for task in sorted(run["rows"]):
            kind = kind_of(run["rows"][task])
            m = means(run["rows"][task], kind)
            print(f"| {CONDITIONS[cond]} | {seed} | {steps} | {info['seen']:,.0f} | {kind} | {len(run['rows'][task]):,} | "
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

    for cond in [c for c in CONDITIONS if c != "rec"]:
        seeds = sorted({s for c, s in runs if c == "rec"} & {s for c, s in runs if c == cond})
        if seeds:
            paired_against_rec(runs, cond, seeds, args.samples)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_hit) = plt.subplots(1, 2, figsize=(11, 4))
    colors = {"rec": "tab:blue", "aux": "tab:orange", "aux_equal": "tab:green", "mim": "tab:red", "mlm": "tab:purple",
              "bpr": "tab:brown"}
    validated = all(run["train"]["validation"] for run in runs.values())
    for (cond, seed), run in sorted(runs.items()):
        if validated:  # validation retrieval NDCG@10 against the retrieval windows seen
            points = run["train"]["validation"]
            ax_loss.plot([p["windows"] for p in points], [p["ndcg@10"] for p in points], marker="o", ms=2,
                         color=colors[cond], lw=1, alpha=0.8, label=f"{cond} seed {seed}")
        else:
            steps, losses = zip(*run["train"]["curve"]) if run["train"]["curve"] else ((), ())
            ax_loss.plot(steps, losses, color=colors[cond], lw=1, alpha=0.8, label=f"{cond} seed {seed}")
        task = next((t for t in run["rows"] if kind_of(run["rows"][t]) == "retrieval"), None)
        if task:
            ax_hit.plot(range(1, 21), hit_curve(run["rows"][task]), color=colors[cond], label=f"{cond} seed {seed}")
    task = next(t for t in pop if kind_of(pop[t]) == "retrieval")
    ax_hit.plot(range(1, 21), hit_curve(pop[task]), "k--", label="popularity")
    if validated:
        ax_loss.set(xlabel="retrieval windows seen", ylabel="validation NDCG@10 (seeded users)",
                    title="retrieval on validation during training")
    else:
        ax_loss.set(xlabel="step", ylabel="train loss per target token", title="training (aux: loss over all 5 tasks)")
    ax_hit.set(xlabel="k", ylabel="test hit@k (22,363 users)", title="retrieval over all items (beam 20)")
    finish_plot(fig, (ax_loss, ax_hit), args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
