"""Time from process start to the first step after a resume, at step 100 and at step 50,000 (#22
item 5; goal: independent of the step, within 10%), for a Grain run whose checkpoints hold the
iterator's position.

From a train run's newest checkpoint (--run, trained with --gin_file), for each step k of --at:
a Grain position at step k is written into a copy of the checkpoint renumbered to step k, and
`recjax train` resumes it for one step (no evaluation) in a fresh process, timed from start to
exit. The params are the checkpoint's for every k; only the position differs. The position at the
first k is found by reading k batches from scratch (timed: what a resume without a saved
position replays); a later k's is that state scaled to k (k x batch rows emitted, the examples
read in proportion: a packing round's start, a real position of the stream, though not exactly
the one k batches would reach), and its replay time is extrapolated (marked est.).

    python benchmarks/bench_resume.py --gin_file gin/repro/beauty_t5_compact.gin \
        --run runs/levers/compact --at 100,50000
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def position_after(gin_file: str, batches: int) -> tuple[dict, float]:
    """(the Grain iterator's state after `batches` batches read from scratch, seconds it took)."""
    import gin

    import tasks
    from recjax import gin_utils
    from recjax.input_pipeline import BatchIterator, DatasetConfig

    gin_utils.parse_gin([gin_file], [])
    tasks.register_dataset()
    cfg = DatasetConfig(gin.query_parameter("%MIXTURE_OR_TASK_NAME"), gin.query_parameter("%TASK_FEATURE_LENGTHS"),
                        batch_size=gin.query_parameter("%BATCH_SIZE"), seed=gin.query_parameter("%SEED"),
                        pack=gin.query_parameter("train_lib.train.pack"), loader="grain")
    gin.clear_config()
    start = time.perf_counter()
    it = BatchIterator(cfg)
    for _ in range(batches):
        next(it)
    state = it.iterator_state()
    it.close()
    return state, time.perf_counter() - start


def scaled(state: dict, at: int, step: int) -> tuple[dict, None]:
    """A position at `step` from the position at `at`: every count scaled by step / at (first-fit
    packing: a round's start, `next_row` 0)."""
    factor = step / at
    out = {}
    for key, value in state.items():
        if isinstance(value, dict):
            out[key] = scaled(value, at, step)[0]
        elif key == "next_row":
            out[key] = 0
        elif isinstance(value, int):
            out[key] = int(round(value * factor))
        else:
            out[key] = value
    return out, None


def renumbered_copy(run: str, step: int, state: dict, out: str) -> None:
    """A copy of `run` whose only checkpoint is its newest one, as step `step` at position `state`."""
    ckpt = os.path.join(run, "checkpoints")
    newest = max(int(d) for d in os.listdir(ckpt) if d.isdigit())
    os.makedirs(os.path.join(out, "checkpoints"))
    for name in ("model_config.json", "item_ids.json"):
        shutil.copy(os.path.join(ckpt, name), os.path.join(out, "checkpoints", name))
    target = os.path.join(out, "checkpoints", str(step))
    shutil.copytree(os.path.join(ckpt, str(newest)), target)
    data_state = os.path.join(target, "data_state", "metadata")
    with open(data_state) as f:
        meta = json.load(f)
    meta.update(batches_consumed=step, step=step)
    meta.pop("selection", None)  # no model selection in the timed step
    with open(data_state, "w") as f:
        json.dump(meta, f)
    with open(os.path.join(target, "input_iterator", "process_0-of-1.json"), "w") as f:
        json.dump(state, f)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gin_file", required=True)
    p.add_argument("--run", required=True, help="a train run of --gin_file with at least one checkpoint")
    p.add_argument("--at", default="100,50000")
    args = p.parse_args()
    rows = []
    steps = [int(s) for s in args.at.split(",")]
    first_state, first_replay = position_after(args.gin_file, steps[0])
    for step in steps:
        state, replay = (first_state, first_replay) if step == steps[0] else scaled(first_state, steps[0], step)
        replay = replay if step == steps[0] else first_replay * step / steps[0]
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = os.path.join(tmp, "run")
            renumbered_copy(args.run, step, state, model_dir)
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "recjax.train", f"--gin_file={args.gin_file}",
                                   f"--gin.MODEL_DIR='{model_dir}'", f"--gin.TRAIN_STEPS={step + 1}",
                                   "--gin.train_lib.train.evaluator=None", "--gin.train_lib.train.eval_period=None",
                                   "--gin.train_lib.train.progress=False"], capture_output=True, text=True)
            seconds = time.perf_counter() - start
            if proc.returncode != 0:
                raise SystemExit(proc.stderr[-3000:])
            replayed = "replaying" in proc.stderr
        rows.append((step, seconds, replay, replayed))
    print("| resumed at step | process start to exit, one step (s) | reading that many batches from scratch (s) |")
    print("|---|---|---|")
    for step, seconds, replay, replayed in rows:
        est = "" if step == steps[0] else " (est.)"
        print(f"| {step:,} | {seconds:.1f}{' (replayed!)' if replayed else ''} | {replay:.1f}{est} |")
    if len(rows) > 1:
        print(f"\nratio last / first: {rows[-1][1] / rows[0][1]:.3f}")


if __name__ == "__main__":
    main()
