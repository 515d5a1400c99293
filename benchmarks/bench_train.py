"""Training throughput: recjax's train step against transformers' PyTorch T5, same run.

Both sides train the same T5 v1.1 config on the same random batch with Adafactor (T5X's
fine-tuning settings: decay 0.8, update clipping 1.0, parameter scaling, no momentum, lr 1e-3;
optax's on recjax's side, `transformers.optimization.Adafactor` on PyTorch's), float32, on this
CPU. Throughput is target tokens per second in steady state (compile / warm-up excluded, median
of the timed steps). Model FLOPs per step come from XLA's cost analysis of recjax's compiled step
and are reported next to the CPU's fp32 peak (--peak_gflops, 358 for this 2-core machine).

    python benchmarks/bench_train.py --sizes tiny,small --batch 16 --inputs 256 --targets 32 --steps 5
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np
import torch

from recjax import optimizers, partitioning
from recjax.config import SIZES, T5Config
from recjax.hf_mapping import params_to_hf, t5config_to_hf
from recjax.model import EncoderDecoderModel, LossConfig
from recjax.model_inputs import shift_right
from recjax.param_tree import flatten_params
from recjax.trainer import Trainer

TINY = T5Config(emb_dim=128, num_heads=4, head_dim=32, num_encoder_layers=2, num_decoder_layers=2, mlp_dim=256)
# The CPU reproduction's model (gin/repro/beauty_cpu_common.gin).
MINI = T5Config(emb_dim=256, num_heads=4, head_dim=64, num_encoder_layers=4, num_decoder_layers=4, mlp_dim=1024)
EXTRA_SIZES = {"tiny": TINY, "mini": MINI}


def make_batch(cfg: T5Config, batch: int, inputs: int, targets: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    tgt = rng.integers(2, cfg.vocab_size, (batch, targets)).astype(np.int32)
    return {"encoder_input_tokens": rng.integers(2, cfg.vocab_size, (batch, inputs)).astype(np.int32),
            "decoder_target_tokens": tgt, "decoder_input_tokens": np.asarray(shift_right(tgt)),
            "decoder_loss_weights": np.ones(tgt.shape, np.float32)}


def bench_recjax(cfg: T5Config, batch: dict, steps: int):
    mesh = partitioning.make_mesh(1, 1, jax.devices()[:1])
    trainer = Trainer(EncoderDecoderModel(cfg, LossConfig(z_loss=0.0)), optimizers.adafactor(),
                      partitioning.Partitioner(mesh, "data_parallel"))
    state = trainer.init_state()
    sharded = trainer.shard_batch(batch)
    compiled = jax.jit(trainer._step).lower(state, sharded).compile()
    flops = float((compiled.cost_analysis() or {}).get("flops", 0.0))
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        state, metrics = trainer.train_step(state, sharded)
        jax.block_until_ready(metrics["loss"])
        if i:  # the first call compiles
            times.append(time.perf_counter() - t)
    return statistics.median(times), flops, jax.device_get(state.params), float(metrics["loss"])


def bench_torch(cfg: T5Config, params, batch: dict, steps: int):
    import transformers
    from transformers.optimization import Adafactor

    hf_cfg = transformers.T5Config(**t5config_to_hf(cfg))
    model = transformers.T5ForConditionalGeneration(hf_cfg)
    model.lm_head.weight = torch.nn.Parameter(torch.empty_like(model.lm_head.weight))  # untied, as v1.1
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in params_to_hf(flatten_params(params), cfg).items()}
    model.load_state_dict(state, strict=False)
    model.train()
    opt = Adafactor(model.parameters(), lr=1e-3, decay_rate=-0.8, clip_threshold=1.0, scale_parameter=True,
                    relative_step=False, warmup_init=False, beta1=None)
    enc = torch.from_numpy(batch["encoder_input_tokens"]).long()
    labels = torch.from_numpy(batch["decoder_target_tokens"]).long()
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        loss = model(input_ids=enc, attention_mask=enc > 0, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - t)
    return statistics.median(times), float(loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="tiny,small", help="tiny, mini (the CPU reproduction's), or recjax.config.SIZES")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--inputs", type=int, default=256)
    parser.add_argument("--targets", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--peak_gflops", type=float, default=358.0)
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    print(f"jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); batch {args.batch}, inputs {args.inputs}, targets {args.targets}")
    print("| model | params | recjax s/step | torch s/step | recjax tok/s | torch tok/s | ratio | recjax GFLOP/s (peak %.0f) |"
          % args.peak_gflops)
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        cfg = EXTRA_SIZES[size] if size in EXTRA_SIZES else SIZES[size]
        cfg = cfg.replace(dropout_rate=0.0, dtype="float32")
        batch = make_batch(cfg, args.batch, args.inputs, args.targets)
        tokens = int(batch["decoder_target_tokens"].size)
        jax_s, flops, params, _ = bench_recjax(cfg, batch, args.steps)
        torch_s, _ = bench_torch(cfg, params, batch, args.steps)
        n = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(params))
        print(f"| {size} | {n / 1e6:.1f}M | {jax_s:.3f} | {torch_s:.3f} | {tokens / jax_s:,.0f} | "
              f"{tokens / torch_s:,.0f} | {torch_s / jax_s:.2f}x | {flops / jax_s / 1e9:.1f} |", flush=True)


if __name__ == "__main__":
    main()
