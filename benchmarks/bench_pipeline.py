"""Input pipeline vs training: examples per second of `<name>_rec_aux` on Beauty (tokenized, packed
by seqio's EncDecFeatureConverter, batched) against the examples per second one training step of
the small-shaped T5 consumes (forward + backward, float32, jit, steady state), same batch shape,
on this machine. The pipeline must be at least 10x faster than training.

    python benchmarks/bench_pipeline.py                       # prepares Beauty into a temp dir
    python benchmarks/bench_pipeline.py --data_dir data/beauty --batch 4 --train_steps 3

"examples" are task examples (a packed row holds several); the training side's examples per step
is the average the pipeline packs into one batch of the same shape.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _prepare_beauty(out: str) -> str:
    from recjax.cli import prepare

    src = os.path.join(REPO, "..", "shared", "data", "beauty")
    if prepare.main(["--format", "p5", "--src", src, "--out", out, "--no-tfds"]) != 0:
        raise SystemExit(f"could not prepare Beauty from {src}")
    return out


def measure_pipeline(name: str, lengths: dict, batch: int, batches: int, warmup: int, seed: int) -> dict:
    import numpy as np
    import seqio

    start = time.perf_counter()
    ds = seqio.get_dataset(f"{name}_rec_aux", task_feature_lengths=lengths, dataset_split="train",
                           shuffle=True, seed=seed, num_epochs=None,
                           feature_converter=seqio.EncDecFeatureConverter(pack=True))
    it = ds.batch(batch, drop_remainder=True).as_numpy_iterator()
    for _ in range(warmup):  # builds the graphs and fills the shuffle buffers
        next(it)
    first = time.perf_counter() - start
    examples = tokens = 0
    start = time.perf_counter()
    for _ in range(batches):
        b = next(it)
        # examples per packed row = its largest segment id: [batch, length] -> [batch]
        examples += int(b["decoder_segment_ids"].max(axis=1).sum())
        tokens += int((b["encoder_input_tokens"] > 0).sum() + (b["decoder_target_tokens"] > 0).sum())
    seconds = time.perf_counter() - start
    example = {k: np.asarray(v) for k, v in b.items()}
    return {"examples_per_s": examples / seconds, "tokens_per_s": tokens / seconds,
            "examples_per_batch": examples / batches, "startup_s": first, "batch": example,
            "seconds": seconds, "batches": batches}


def measure_training(batch: dict, steps: int) -> dict | None:
    try:
        import jax
        import jax.numpy as jnp

        from recjax.config import SIZES
        from recjax.network import Transformer
    except ImportError as e:  # the network is another issue's: leave the comparison to it
        print(f"training side skipped: {e}", file=sys.stderr)
        return None
    config = SIZES["small"].replace(dtype="float32")
    model = Transformer(config)
    batch = {k: jnp.asarray(v) for k, v in batch.items()}
    params = model.init({"params": jax.random.PRNGKey(0)}, batch["encoder_input_tokens"][:1, :8],
                        batch["decoder_input_tokens"][:1, :8], enable_dropout=False)["params"]

    def loss_fn(p):
        logits = model.apply({"params": p}, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
                             batch["decoder_target_tokens"], batch["encoder_segment_ids"],
                             batch["decoder_segment_ids"], enable_dropout=False)  # [b, dec, vocab]
        logp = jax.nn.log_softmax(logits.astype(jnp.float32))
        nll = -jnp.take_along_axis(logp, batch["decoder_target_tokens"][..., None], -1)[..., 0]
        return jnp.sum(nll * batch["decoder_loss_weights"]) / jnp.maximum(batch["decoder_loss_weights"].sum(), 1)

    step = jax.jit(jax.value_and_grad(loss_fn))
    start = time.perf_counter()
    jax.block_until_ready(step(params))  # compile + first run
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        jax.block_until_ready(step(params))
        times.append(time.perf_counter() - start)
    return {"step_s": min(times), "step_s_all": times, "compile_s": compile_s,
            "params": sum(x.size for x in jax.tree_util.tree_leaves(params))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", help="a prepared Beauty (default: prepare ../shared/data/beauty into a temp dir)")
    p.add_argument("--vocab", default=os.path.join(REPO, "..", "shared", "data", "t5_tokenizer", "spiece_rebuilt.model"))
    p.add_argument("--batch", type=int, default=4, help="packed rows per batch (both sides)")
    p.add_argument("--inputs_length", type=int, default=512)
    p.add_argument("--targets_length", type=int, default=32)
    p.add_argument("--batches", type=int, default=200, help="timed pipeline batches")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--train_steps", type=int, default=3, help="timed training steps (after compile)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import tasks

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or _prepare_beauty(os.path.join(tmp, "beauty"))
        start = time.perf_counter()
        tasks.register_dataset(data_dir, "beauty", args.vocab)
        register_s = time.perf_counter() - start
        lengths = {"inputs": args.inputs_length, "targets": args.targets_length}
        pipe = measure_pipeline("beauty", lengths, args.batch, args.batches, args.warmup, args.seed)
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"register_dataset (Beauty, 5 tasks, 5 mixtures): {register_s:.2f} s")
    print(f"pipeline beauty_rec_aux, packed [{args.batch}, {args.inputs_length}] / [{args.batch}, "
          f"{args.targets_length}]: {pipe['examples_per_s']:,.0f} examples/s, {pipe['tokens_per_s']:,.0f} "
          f"non-pad tokens/s, {pipe['examples_per_batch']:.1f} examples per batch "
          f"({pipe['batches']} batches in {pipe['seconds']:.1f} s; first {args.warmup} batches incl. "
          f"graph building and shuffle buffers {pipe['startup_s']:.1f} s)")
    train = measure_training(pipe["batch"], args.train_steps)
    if train is None:
        return 0
    train_eps = pipe["examples_per_batch"] / train["step_s"]
    ratio = pipe["examples_per_s"] / train_eps
    print(f"training T5 small ({train['params'] / 1e6:.1f}M params, float32, jit fwd+bwd), same batch: "
          f"{train['step_s']:.2f} s/step (best of {', '.join(f'{t:.2f}' for t in train['step_s_all'])}; "
          f"compile {train['compile_s']:.1f} s) = {train_eps:,.1f} examples/s")
    print(f"pipeline / training = {ratio:,.0f}x (required >= 10x): {'OK' if ratio >= 10 else 'TOO SLOW'}")
    return 0 if ratio >= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
