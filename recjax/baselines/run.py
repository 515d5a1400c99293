"""A baseline trained and evaluated on a prepared dataset, its outputs written (what `recjax
baseline` runs): metrics.json, report.md, config.gin, predictions.jsonl (`recjax.predictions`)
and, for neural models, an orbax checkpoint; the directory appears whole or not at all."""
from __future__ import annotations

import json
import os
import time
from typing import Any

import gin

from recjax.predictions import PREDICTIONS_FILE, write_predictions

RANKING_MODELS = ("popularity", "sasrec", "bert4rec")
RATING_MODELS = ("global_mean", "item_mean")
MODELS = RANKING_MODELS + RATING_MODELS
PROTOCOL = ("leave-one-out; valid target = seq[-2] with history seq[:-2], test target = seq[-1] with "
            "history seq[:-1]; full ranking over all items, the user's history items excluded; "
            "training on seq[:-2]; model selection by valid ndcg@10")


def _write_text(directory: str, name: str, text: str) -> None:
    with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
        f.write(text)


def _fmt(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def render_report(result: dict[str, Any]) -> str:
    names = ["hit@5", "hit@10", "ndcg@5", "ndcg@10"]
    lines = [f"# {result['model']} on {result['dataset']['name']}", "",
             f"{result['dataset']['num_users']} users, {result['dataset']['num_items']} items "
             f"(`{result['dataset']['directory']}`).", "",
             f"Protocol: {result['protocol']}.", "",
             "| split | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for split in ("valid", "test"):
        lines.append(f"| {split} | " + " | ".join(_fmt(result[split][n]) for n in names) + " |")
    t = result["training"]
    lines += ["", f"- selected: epoch {t['best_epoch']} of {t['epochs_run']} ({t['steps_run']} steps); "
              f"stopped: {t['stopped_because']}",
              f"- wall time: train {t['train_seconds']:.1f} s, evaluation {t['eval_seconds']:.1f} s, "
              f"total {t['total_seconds']:.1f} s on {t['devices']}"]
    if t["history"]:
        lines += ["", "Validation during training:", "",
                  "| epoch | step | train loss | valid hit@10 | valid ndcg@10 |", "|---|---|---|---|---|"]
        lines += [f"| {h['epoch']} | {h['step']} | {h['train_loss']:.4f} | {h['hit@10']:.4f} | {h['ndcg@10']:.4f} |"
                  for h in t["history"]]
    lines += ["", "Gin config: `config.gin`; metrics: `metrics.json`; per-user test rankings: `predictions.jsonl` "
              "(`recjax compare` pairs them with a recjax eval run's on the same users)."]
    return "\n".join(lines) + "\n"


def render_rating_report(result: dict[str, Any]) -> str:
    lines = [f"# {result['model']} on {result['dataset']['name']}", "",
             f"{result['dataset']['num_users']} users, {result['dataset']['num_items']} items "
             f"(`{result['dataset']['directory']}`).", "", f"Protocol: {result['protocol']}.", "",
             "| split | rmse | mae | ratings |", "|---|---|---|---|"]
    for split in ("valid", "test"):
        m = result[split]
        lines.append(f"| {split} | {m['rmse']:.4f} | {m['mae']:.4f} | {m['num_examples']} |")
    lines += ["", "Gin config: `config.gin`; metrics: `metrics.json`."]
    return "\n".join(lines) + "\n"


def run_rating(model_name: str, ds, data_dir: str, out_dir: str, overwrite: bool) -> dict[str, Any]:
    """A rating mean baseline: fit, RMSE/MAE on valid and test, OUT written atomically."""
    from recjax.baselines.rating_means import RATING_PROTOCOL, fit_and_evaluate
    from recjax.data.atomic import atomic_directory

    if ds.ratings is None or ds.rating_splits is None:
        raise ValueError(f"{data_dir}: dataset {ds.name!r} has no ratings "
                         f"(--model {model_name} needs a rated dataset, e.g. MovieLens)")
    metrics = fit_and_evaluate(model_name, ds)
    result = {"model": model_name, "protocol": RATING_PROTOCOL,
              "dataset": {"name": ds.name, "directory": os.path.abspath(data_dir),
                          "num_users": ds.num_users, "num_items": ds.num_items}, **metrics}
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        _write_text(tmp, "metrics.json", json.dumps(result, indent=2) + "\n")
        _write_text(tmp, "report.md", render_rating_report(result))
        _write_text(tmp, "config.gin", gin.operative_config_str())
    return result


def run(model_name: str, data_dir: str, out_dir: str, overwrite: bool = False,
        progress: bool = True) -> dict[str, Any]:
    """Train/evaluate with the gin config already parsed; writes OUT atomically; returns metrics."""
    import jax

    from recjax.baselines.evaluate import PREDICTION_DEPTH, full_ranking, full_ranking_metrics, prediction_rows
    from recjax.baselines.popularity import Popularity
    from recjax.baselines.train_loop import save_params, train_and_evaluate
    from recjax.data import load_prepared
    from recjax.data.atomic import atomic_directory

    if os.path.exists(out_dir) and not overwrite:
        raise ValueError(f"{out_dir}: already exists (pass --overwrite to replace it)")
    ds = load_prepared(data_dir)
    if model_name in RATING_MODELS:
        return run_rating(model_name, ds, data_dir, out_dir, overwrite)
    start = time.perf_counter()
    train = ds.train_sequences()
    valid, test = ds.loo_split("valid"), ds.loo_split("test")
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        if model_name == "popularity":
            model = Popularity(ds.num_items).fit(train)
            eval_start = time.perf_counter()
            valid_m = full_ranking_metrics(lambda rows: model.scores(len(rows)), *valid, ds.num_items)
            test_m, test_top = full_ranking(lambda rows: model.scores(len(rows)), *test, ds.num_items,
                                            depth=PREDICTION_DEPTH)
            training = {"best_epoch": 0, "epochs_run": 0, "steps_run": 0, "history": [],
                        "stopped_because": "no training (counts of the train split)",
                        "train_seconds": eval_start - start, "eval_seconds": time.perf_counter() - eval_start}
        else:
            from recjax.baselines.bert4rec import BERT4Rec
            from recjax.baselines.sasrec import SASRec
            model = {"sasrec": SASRec, "bert4rec": BERT4Rec}[model_name](num_items=ds.num_items)
            r = train_and_evaluate(model, train, valid, test, progress=progress)
            valid_m, test_m, test_top = r.valid_metrics, r.test_metrics, r.test_top
            save_params(os.path.join(tmp, "checkpoint"), r.params, r.steps_run)
            training = {"best_epoch": r.best_epoch, "epochs_run": r.epochs_run, "steps_run": r.steps_run,
                        "stopped_because": r.stopped_because, "train_seconds": r.train_seconds,
                        "eval_seconds": r.eval_seconds, "history": r.history}
            if model_name == "bert4rec":
                training["masked_positions_over_budget"] = int(model.overflow)
        training["total_seconds"] = time.perf_counter() - start
        training["devices"] = f"{jax.device_count()} x {jax.devices()[0].device_kind}"
        result = {"model": model_name, "protocol": PROTOCOL,
                  "dataset": {"name": ds.name, "directory": os.path.abspath(data_dir),
                              "num_users": ds.num_users, "num_items": ds.num_items},
                  "valid": valid_m, "test": test_m, "training": training}
        _write_text(tmp, "metrics.json", json.dumps(result, indent=2) + "\n")
        _write_text(tmp, "report.md", render_report(result))
        rows = prediction_rows(f"{ds.name}_retrieval", test_top, test[1], ds.item_ids, ds.item_original_ids)
        write_predictions(os.path.join(tmp, PREDICTIONS_FILE), rows)
        _write_text(tmp, "config.gin", gin.operative_config_str())
    return result
