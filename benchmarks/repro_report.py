"""Tables and training curves of the CPU reproduction (gin/repro/), for benchmarks/RESULTS.md.

Reads what the reproduction's commands wrote (RESULTS.md lists them):
  runs/repro/beauty_cpu_{rec,rec_aux}/test_full/metrics.json   `recjax eval` on beauty_retrieval, the
                                                              whole test split
  runs/repro/beauty_cpu_{rec,rec_aux}/test/metrics.json   the same on the first 5,000 test users (optional)
  runs/repro/beauty_cpu_{rec,rec_aux}/ranking/metrics.json   beauty_ranking, test (optional)
  runs/repro/beauty_cpu_{rec,rec_aux}{,_1200}/{test,ranking_5000}/metrics.json   the first 5,000 test
                                                              users at 600 and 1200 steps (optional)
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


def popularity_on_first_users(ds, popularity, num_users: int) -> dict[str, float]:
    from recjax.baselines.evaluate import full_ranking_metrics

    histories, targets = ds.loo_split("test")
    return full_ranking_metrics(lambda rows: popularity.scores(len(rows)), histories[:num_users],
                                targets[:num_users], ds.num_items)


BEAUTY_RUNS = ("beauty_cpu_rec", "beauty_cpu_rec_aux")
BEAUTY_EVAL_DIRS = ("test_full", "test")  # the whole test split; the first 5,000 test users


def t5_label(run: str) -> str:
    return run.replace("beauty_cpu_", "T5 from scratch, ")


def common_count(results: list[dict], what: str) -> int:
    """The number of examples every result saw; they must agree, or the rows are not comparable."""
    counts = {r["num_examples"] for r in results}
    if len(counts) != 1:
        raise SystemExit(f"repro_report: the {what} saw different numbers of users: {sorted(counts)}")
    return counts.pop()


def markdown_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"] + ["| " + " | ".join(r) + " |" for r in rows]


def beauty_table(runs_dir: str, ds, popularity, eval_dir: str) -> str:
    """Markdown table of both Beauty runs' `eval_dir` evaluations and popularity on the same users."""
    results = [task_result(os.path.join(runs_dir, run, eval_dir, "metrics.json"), "beauty_retrieval")
               for run in BEAUTY_RUNS]
    n = common_count(results, f"two Beauty evaluations in {eval_dir}/")
    rows = [("popularity", popularity_on_first_users(ds, popularity, n))]
    rows += [(t5_label(run), r["metrics"]) for run, r in zip(BEAUTY_RUNS, results)]
    lines = [f"Beauty, test split, retrieval over all 12,101 items (beam 20, constrained, history excluded), "
             f"{'first ' if eval_dir != 'test_full' else 'all '}{n:,} users ({eval_dir}/):", ""]
    return "\n".join(lines + markdown_table(["model", *RETRIEVAL], [
        [name] + [f"{m.get(k, 1.0 if k == 'valid_id_rate' else float('nan')):.4f}" for k in RETRIEVAL]
        for name, m in rows]))


def popularity_on_ranking_examples(gin_file: str, data_dir: str, ds, popularity, num_users: int) -> dict[str, float]:
    """Popularity (train-split counts) ordering the candidates of the first `num_users` test examples
    of beauty_ranking, registered as `gin_file` registers it (its negatives, its seed)."""
    import seqio

    import recjax.train_lib  # noqa: F401  (registers the configurables the Gin file binds)
    import tasks
    from recjax import gin_utils, metrics
    from recjax.evaluation import load_examples
    from tasks import candidates_and_positive

    gin_utils.parse_gin([gin_file], [f"DATA_DIR = {data_dir!r}"])
    tasks.register_dataset()  # with the Gin file's bindings
    examples = load_examples(seqio.get_mixture_or_task("beauty_ranking"), "test", num_users)
    scores, positive = [], []
    for ex in examples:
        ids, pos = candidates_and_positive(ex)
        scores.append([popularity.counts[ds.item_index(i)] for i in ids])  # [candidates]
        positive.append(pos)
    return metrics.ranking_metrics(np.asarray(scores, np.float64), np.asarray(positive))
RANKING = ("hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10")


def ranking_table(runs_dir: str, data_dir: str, ds, popularity) -> str | None:
    """Markdown table of both Beauty runs' ranking evaluations (ranking/) and popularity on the same
    examples; None when either run has none."""
    paths = [os.path.join(runs_dir, run, "ranking", "metrics.json") for run in BEAUTY_RUNS]
    if not all(os.path.isfile(p) for p in paths):
        return None
    results = [task_result(p, "beauty_ranking") for p in paths]
    n = common_count(results, "two ranking evaluations")
    gin_file = os.path.join("gin", "repro", "beauty_cpu_rec.gin")
    rows = [("popularity", popularity_on_ranking_examples(gin_file, data_dir, ds, popularity, n))]
    rows += [(t5_label(run), r["metrics"]) for run, r in zip(BEAUTY_RUNS, results)]
    lines = [f"Beauty, test split, ranking of 20 candidates (the test item and 19 items the user never "
             f"touched, sampled uniformly), {n:,} users (ranking/):", ""]
    return "\n".join(lines + markdown_table(["model", *RANKING],
                                            [[name] + [f"{m[k]:.4f}" for k in RANKING] for name, m in rows]))


LONGER_SUFFIX = "_1200"  # the same runs resumed to twice the step budget


def budget_table(runs_dir: str) -> str | None:
    """Markdown table of both Beauty runs at 600 and 1200 steps on the first 5,000 test users
    (retrieval in test/, ranking in ranking_5000/); None before the longer runs exist."""
    rows = []
    for run in BEAUTY_RUNS:
        for suffix in ("", LONGER_SUFFIX):
            d = os.path.join(runs_dir, run + suffix)
            paths = [os.path.join(d, "test", "metrics.json"), os.path.join(d, "ranking_5000", "metrics.json")]
            if not all(os.path.isfile(p) for p in paths):
                return None
            r = task_result(paths[0], "beauty_retrieval")["metrics"]
            k = task_result(paths[1], "beauty_ranking")["metrics"]
            step = read_json(paths[0])["info"]["step"]
            rows.append([run.replace("beauty_cpu_", ""), str(step)] + [f"{v:.4f}" for v in (
                r["hit@10"], r["ndcg@10"], k["hr@1"], k["hr@10"], k["ndcg@10"])])
    lines = ["Beauty, first 5,000 test users, by step budget (retrieval over all items; ranking of 20 candidates):", ""]
    return "\n".join(lines + markdown_table(
        ["run", "steps", "hit@10", "ndcg@10", "ranking hr@1", "ranking hr@10", "ranking ndcg@10"], rows))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs/repro")
    parser.add_argument("--beauty", default="data/beauty", help="the prepared Beauty dataset")
    parser.add_argument("--ml", default="data/ml100k", help="the prepared MovieLens-100k dataset")
    parser.add_argument("--plot", default="benchmarks/repro_curves.png")
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from recjax.baselines.popularity import Popularity
    from recjax.baselines.rating_means import fit_and_evaluate
    from recjax.data import load_prepared

    beauty = load_prepared(args.beauty)  # read once: popularity is fit once for every table
    popularity = Popularity(beauty.num_items).fit(beauty.train_sequences())
    tables = [beauty_table(args.runs, beauty, popularity, d) for d in BEAUTY_EVAL_DIRS
              if all(os.path.isfile(os.path.join(args.runs, run, d, "metrics.json")) for run in BEAUTY_RUNS)]
    if not tables:
        raise SystemExit(f"repro_report: no evaluation of both {BEAUTY_RUNS} under {args.runs}/<run>/"
                         f"{{{','.join(BEAUTY_EVAL_DIRS)}}}/metrics.json (run the commands in benchmarks/RESULTS.md)")
    extra = [t for t in (ranking_table(args.runs, args.beauty, beauty, popularity), budget_table(args.runs)) if t]
    print("\n\n".join(tables + extra))

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
        longer = os.path.join(args.runs, run + LONGER_SUFFIX, "metrics.jsonl")  # holds the first 600 steps too
        steps, losses = read_curve(longer if os.path.isfile(longer) else os.path.join(args.runs, run, "metrics.jsonl"))
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
