"""Next-item windows per CPU-second of the CPU recipe's model, lever by lever (#22 item 5), in one
run on this machine.

Every form trains the recipe's T5 (v1.1, d_model 128, 2+2 layers, 4 heads, Adafactor) on real
Beauty batches from the Grain loader (collaborative item IDs, `data/beauty_collaborative`), batch
32, for --steps timed steps after two warm-up steps (a step's time includes waiting for its batch);
a window is one next-item (retrieval) example trained on (packed rows count their segments). The forms, each adding one lever:

  recipe      today's recipe: beauty_rec (retrieval + ranking over 20), FLAN-T5's 32k vocabulary
              + codes (32,384 rows), inputs 192 / targets 8, padded
  retrieval   a retrieval-only stream (the ranking half of each batch becomes next-item windows)
  compact     + the dataset's own 2k vocabulary + codes (--gin tasks.dataset_vocabulary), 2,304 rows
  codes       + TIGER's form: inputs are the history's codes only, vocabulary = the codes (384 rows),
              inputs 84 (20 items x 4 codes + EOS)
  packed      + Grain's first-fit packing of those inputs into rows of 128 / 20 (--packed_lengths)

    python benchmarks/bench_levers.py --steps 20 [--forms recipe,retrieval,compact,codes,packed]

Prints one table row per form and the ratio of each to the recipe (same run, same machine).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import numpy as np

DATA_DIR = "data/beauty_collaborative"
FLAN_VOCAB = "../shared/data/t5_tokenizer/spiece_rebuilt.model"
FORMS = ("recipe", "retrieval", "compact", "codes", "packed")
PACKED_INPUTS, PACKED_TARGETS = 128, 20


def form_setup(form: str):
    """(registered dataset name, task, lengths, pack, vocabulary path) of a form."""
    import tasks

    common = dict(data_dir=DATA_DIR, item_text=False, num_negatives=19, ranking_max_history=10, max_history=20)
    if form in ("recipe", "retrieval"):
        vocab = FLAN_VOCAB
    elif form == "compact":
        vocab = tasks.dataset_vocabulary(data_dir=DATA_DIR, vocab_size=2000)
    else:
        vocab = tasks.code_vocabulary(data_dir=DATA_DIR)
    name = f"lever_{form}"
    input_form = "codes" if form in ("codes", "packed") else "template"
    tasks.register_dataset(name=name, vocab_path=vocab, input_form=input_form, **common)
    task = f"{name}_rec" if form == "recipe" else f"{name}_retrieval"
    lengths = {"inputs": 84 if input_form == "codes" else 192, "targets": 8}
    if form == "packed":  # room for several examples per row: a target is 4 codes + EOS
        lengths = {"inputs": PACKED_INPUTS, "targets": PACKED_TARGETS}
    return task, lengths, "first_fit" if form == "packed" else False


def windows_in(batch: dict, retrieval_rows: np.ndarray | None) -> int:
    """Retrieval windows a batch trains on: packed segments, or its retrieval rows."""
    if "encoder_segment_ids" in batch:
        return int(sum(len(np.unique(row[row > 0])) for row in batch["encoder_segment_ids"]))
    return int(retrieval_rows.sum()) if retrieval_rows is not None else len(batch["encoder_input_tokens"])


def form_batches(form: str, batch_size: int):
    """(task, lengths, pack, the Grain BatchIterator) of a form."""
    from recjax.input_pipeline import BatchIterator, DatasetConfig

    task, lengths, pack = form_setup(form)
    batches = BatchIterator(DatasetConfig(task, lengths, batch_size=batch_size, seed=0, pack=pack, loader="grain"))
    return task, lengths, pack, batches


def form_trainer(task: str):
    """The recipe's T5 (d 128, 2+2 layers, Adafactor 0.01) with the vocabulary of `task`, one device."""
    import tasks
    from recjax import optimizers
    from recjax.config import T5Config, padded_vocab_size
    from recjax.model import EncoderDecoderModel
    from recjax.partitioning import Partitioner
    from recjax.trainer import Trainer

    vocab = padded_vocab_size(max(tasks.dataset_of(t).vocab_size for t, _ in tasks.mixture_members(task)))
    config = T5Config(vocab_size=vocab, emb_dim=128, num_heads=4, head_dim=32, num_encoder_layers=2,
                      num_decoder_layers=2, mlp_dim=512, dropout_rate=0.1)
    return Trainer(EncoderDecoderModel(config), optimizers.adafactor(learning_rate=0.01), Partitioner.create((-1, 1)))


def bench(form: str, steps: int, batch_size: int) -> dict:
    import tasks

    task, lengths, pack, batches = form_batches(form, batch_size)
    trainer = form_trainer(task)
    vocab = trainer.model.config.vocab_size
    state = trainer.init_state()
    # Which rows are retrieval windows (a mixture's rows: retrieval inputs hold no candidate list).
    tok = tasks.dataset_of(tasks.mixture_members(task)[0][0]).tokenizer
    is_retrieval = (lambda b: np.array(["andidate" not in tok.DecodeIds([int(t) for t in row])
                                        for row in b["encoder_input_tokens"]])) if form == "recipe" else (lambda b: None)
    times, windows, real_in, real_tgt = [], 0, 0, 0
    for i in range(steps + 2):
        t = time.perf_counter()  # the batch's wait counts: the loader shares the two cores
        batch = next(batches)
        state, metrics = trainer.train_step(state, trainer.shard_batch(batch))
        jax.block_until_ready(metrics["loss"])
        if i >= 2:  # two warm-up steps: compile, first block builds
            times.append(time.perf_counter() - t)
            windows += windows_in(batch, is_retrieval(batch))
            real_in += int((batch["encoder_input_tokens"] > 0).sum())
            real_tgt += int((batch["decoder_target_tokens"] > 0).sum())
    batches.close()
    seconds = sum(times)
    return {"form": form, "vocab": vocab, "lengths": f"{lengths['inputs']}/{lengths['targets']}",
            "pack": pack or "-", "s_per_step": statistics.median(times), "windows_per_s": windows / seconds,
            "input_fill": real_in / (steps * batch_size * lengths["inputs"]),
            "real_tokens_per_s": (real_in + real_tgt) / seconds, "loss": float(metrics["loss"])}


def loader_rate(form: str, batches: int, batch_size: int) -> float:
    """Windows per second the Grain loader gives on its own (nothing trains), after one warm-up
    batch."""
    *_, it = form_batches(form, batch_size)
    next(it)
    start, windows = time.perf_counter(), 0
    for _ in range(batches):
        windows += windows_in(next(it), None)
    it.close()
    return windows / (time.perf_counter() - start)


def step_flops(form: str, batch_size: int) -> float:
    """XLA's FLOPs of one train step of a form (forward + backward + update)."""
    task, _, _, it = form_batches(form, batch_size)
    trainer = form_trainer(task)
    batch = trainer.shard_batch(next(it))
    it.close()
    compiled = jax.jit(trainer._step).lower(trainer.init_state(), batch).compile()
    return float((compiled.cost_analysis() or {}).get("flops", 0.0))


def main():
    global PACKED_INPUTS, PACKED_TARGETS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--forms", default=",".join(FORMS))
    p.add_argument("--loader_batches", type=int, default=200, help="batches read for the loader-alone rate "
                   "of the last form (0: skip)")
    p.add_argument("--gpu_tflops", type=float, default=400.0,
                   help="sustained TFLOP/s assumed for one GPU (H100 bf16 at ~40%% of its 989 peak) in the estimate")
    p.add_argument("--packed_lengths", default="128,20", help="inputs,targets of 'packed'")
    args = p.parse_args()
    PACKED_INPUTS, PACKED_TARGETS = (int(x) for x in args.packed_lengths.split(","))
    if not os.path.isdir(DATA_DIR):
        raise SystemExit(f"{DATA_DIR}: not prepared; run the recipe's prepare and index commands "
                         "(gin/repro/beauty_t5_recipe.gin) first")
    rows = [bench(form, args.steps, args.batch) for form in args.forms.split(",")]
    base = rows[0]["windows_per_s"]
    print(f"{jax.devices()[0].device_kind}, {os.cpu_count()} cores, batch {args.batch}, {args.steps} timed steps\n")
    print("| form | vocab rows | in/tgt | pack | s/step | input fill | real tokens/s | windows/s | vs recipe |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['form']} | {r['vocab']:,} | {r['lengths']} | {r['pack']} | {r['s_per_step']:.3f} | "
              f"{r['input_fill']:.0%} | {r['real_tokens_per_s']:,.0f} | {r['windows_per_s']:.1f} | "
              f"{r['windows_per_s'] / base:.1f}x |")
    if args.loader_batches:
        last = rows[-1]
        alone = loader_rate(last["form"], args.loader_batches, args.batch)
        flops = step_flops(last["form"], args.batch)
        per_window = flops / (last["windows_per_s"] * last["s_per_step"])
        gpu = args.gpu_tflops * 1e12 / per_window
        print(f"\nloader alone ({last['form']}): {alone:,.0f} windows/s = {alone / last['windows_per_s']:.0f}x what "
              f"training consumes here ({last['windows_per_s']:.0f}/s); one GPU at {args.gpu_tflops:.0f} TFLOP/s would "
              f"consume ~{gpu:,.0f} windows/s (estimate: XLA's {flops / 1e9:.1f} GFLOP per step, "
              f"{per_window / 1e6:.0f} MFLOP per window): the loader gives 1/{gpu / alone:,.0f} of that")


if __name__ == "__main__":
    main()
