"""The prepared accelerator check (issue 14 item 5): one command, three stages, one JSON and one
markdown table. Needs neither TensorFlow nor SeqIO (the Grain loader and the TF-free evaluator).

  train     a training step of T5 v1.1 Small- and Base-shaped models in bfloat16: target tokens/s
            and model-FLOPs utilisation (XLA's cost analysis of the compiled step over
            --peak_tflops), beside transformers' PyTorch T5 (bf16 autocast, Adafactor, the same
            batch and shapes) timed in the same run. Goals: MFU >= 40 % on Base, >= 1.5x PyTorch.
  decode    constrained beam-20 retrieval over the catalog of --data_dir (history excluded):
            users/s of recjax against transformers' `generate` with `prefix_allowed_tokens_fn`
            over the same trie, the same random Small-shaped model and users. Goal >= 10x.
  beauty    a from-scratch run of the recipe model (--gin_file, default the CPU recipe's
            collaborative-ID T5) for about --beauty_minutes on the prepared dataset, steps sized
            from a measured warm-up, then test NDCG@10 on every user (beam 20, constrained).
  tiger     TIGER's configuration (gin/baselines/tiger_beauty.gin: 4+4 layers, d 128, semantic IDs
            from item text, a code-only vocabulary, first-fit packed windows, the Grain path) in
            bfloat16 for about --tiger_minutes, validation every tenth of the run with the best
            checkpoint kept, then test NDCG@10 of the best on every user (#23 item 6; TIGER
            reports 0.0384). Its own call: `--stages tiger` (the default stages fill one).

    bash benchmarks/device/check.sh                 # on the GPU machine (see its header)
    bash benchmarks/device/check.sh --cpu-smoke     # every stage with tiny sizes on this CPU (< 2 min)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))


def _devices():
    import jax

    device = jax.devices()[0]
    return {"jax": jax.__version__, "platform": device.platform, "device": device.device_kind,
            "count": jax.device_count()}


def _timed(fn, steps: int) -> float:
    """Median seconds of `steps` calls after one untimed (compiling) call."""
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        fn()
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


# ------------------------------------------------------------------------------------------- train

def train_stage(sizes, batch: int, inputs: int, targets: int, steps: int, peak_tflops: float, torch_device: str):
    import jax
    import torch
    import transformers
    from transformers.optimization import Adafactor

    from bench_train import EXTRA_SIZES, make_batch
    from recjax import optimizers, partitioning
    from recjax.config import SIZES
    from recjax.hf_mapping import params_to_hf, t5config_to_hf
    from recjax.model import EncoderDecoderModel, LossConfig
    from recjax.param_tree import flatten_params, tree_num_params
    from recjax.trainer import Trainer

    rows = []
    for size in sizes:
        cfg = (EXTRA_SIZES.get(size) or SIZES[size]).replace(dropout_rate=0.0, dtype="bfloat16")
        data = make_batch(cfg, batch, inputs, targets)
        tokens = int(data["decoder_target_tokens"].size)
        mesh = partitioning.make_mesh(1, 1, jax.devices()[:1])
        trainer = Trainer(EncoderDecoderModel(cfg, LossConfig(z_loss=0.0)), optimizers.adafactor(),
                          partitioning.Partitioner(mesh, "data_parallel"))
        state = [trainer.init_state()]
        sharded = trainer.shard_batch(data)
        flops = float((jax.jit(trainer._step).lower(state[0], sharded).compile().cost_analysis() or {}).get("flops", 0.0))

        def step():
            state[0], metrics = trainer.train_step(state[0], sharded)
            jax.block_until_ready(metrics["loss"])

        jax_s = _timed(step, steps)
        params = jax.device_get(state[0].params)
        hf = transformers.T5ForConditionalGeneration(transformers.T5Config(**t5config_to_hf(cfg)))
        hf.lm_head.weight = torch.nn.Parameter(torch.empty_like(hf.lm_head.weight))  # untied, as v1.1
        hf.load_state_dict({k: torch.from_numpy(np.array(v, np.float32))
                            for k, v in params_to_hf(flatten_params(params), cfg).items()}, strict=False)
        hf.to(torch_device).train()
        opt = Adafactor(hf.parameters(), lr=1e-3, decay_rate=-0.8, clip_threshold=1.0, scale_parameter=True,
                        relative_step=False, warmup_init=False, beta1=None)
        enc = torch.from_numpy(data["encoder_input_tokens"]).long().to(torch_device)
        labels = torch.from_numpy(data["decoder_target_tokens"]).long().to(torch_device)

        def torch_step():
            with torch.autocast(device_type=torch_device, dtype=torch.bfloat16):
                loss = hf(input_ids=enc, attention_mask=enc > 0, labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if torch_device == "cuda":
                torch.cuda.synchronize()

        torch_s = _timed(torch_step, steps)
        rows.append({"model": size, "params_M": round(tree_num_params(params) / 1e6, 1),
                     "batch": batch, "inputs": inputs, "targets": targets,
                     "recjax_s_per_step": jax_s, "torch_s_per_step": torch_s,
                     "recjax_tokens_per_s": tokens / jax_s, "torch_tokens_per_s": tokens / torch_s,
                     "speedup_vs_torch": torch_s / jax_s, "model_tflops_per_step": flops / 1e12,
                     "mfu": flops / jax_s / (peak_tflops * 1e12)})
        del hf, opt, trainer, state
    return rows


# ------------------------------------------------------------------------------------------ decode

def decode_stage(registered, size: str, users: int, hf_users: int, batch: int, torch_device: str):
    import flax
    import jax
    import torch
    import transformers

    from bench_decode import NestedDictTrie, hf_generate
    from bench_train import EXTRA_SIZES
    from recjax import network
    from recjax.model import EncoderDecoderModel
    from recjax.config import SIZES, padded_vocab_size
    from recjax.decoding import DecodeOptions, ItemDecoder
    from recjax.items.trie import ItemTrie
    from recjax.evaluation import load_examples
    from recjax.hf_mapping import params_to_hf, t5config_to_hf
    from recjax.param_tree import flatten_params
    from recjax.model_inputs import decode_batches

    cfg = (EXTRA_SIZES.get(size) or SIZES[size]).replace(vocab_size=padded_vocab_size(registered.vocab_size),
                                                        dropout_rate=0.0, dtype="bfloat16")
    params = flax.linen.meta.unbox(network.init_params(cfg, jax.random.PRNGKey(0)))
    tok = registered.tokenizer
    dataset = registered.builder.dataset
    trie = ItemTrie.from_token_sequences([tok.EncodeAsIds(i) for i in dataset.item_ids], cfg.vocab_size)
    examples = load_examples(registered.tasks["retrieval"], "test", users, sample_seed=0)
    index = {s: i for i, s in enumerate(dataset.item_ids)}
    histories = [[index[h] for h in ex["history_ids"].split()] for ex in examples]
    decoder = ItemDecoder(EncoderDecoderModel(cfg), trie, DecodeOptions(beam_size=20, top_k=20))
    width = max(8, -(-max(len(set(h)) for h in histories) // 8) * 8)
    runs = list(decode_batches(examples, batch, None))
    search = lambda padded, enc: decoder.search(params, enc, exclude=decoder.exclusion([histories[r] for r in padded], width))
    for width_runs in {enc.shape: (padded, enc) for _, padded, enc in runs}.values():  # compile each shape, untimed
        jax.block_until_ready(search(*width_runs).items)
    start = time.perf_counter()
    for _, padded, enc in runs:
        jax.block_until_ready(search(padded, enc).items)
    recjax_s = time.perf_counter() - start

    hf = transformers.T5ForConditionalGeneration(transformers.T5Config(**t5config_to_hf(cfg)))
    hf.lm_head.weight = torch.nn.Parameter(torch.empty_like(hf.lm_head.weight))
    hf.load_state_dict({k: torch.from_numpy(np.array(v, np.float32))
                        for k, v in params_to_hf(flatten_params(jax.device_get(params)), cfg).items()}, strict=False)
    hf.to(torch_device, dtype=torch.bfloat16).eval()
    generate = hf_generate(hf, NestedDictTrie([trie.item_sequence(i) for i in range(trie.num_items)]), trie.depth)
    hf_runs = list(decode_batches(examples[:hf_users], batch, None))
    with torch.no_grad():
        generate(torch.from_numpy(hf_runs[0][2][:1].astype(np.int64)).to(torch_device))  # warm-up
        start = time.perf_counter()
        for rows, _, enc in hf_runs:
            generate(torch.from_numpy(enc[:len(rows)].astype(np.int64)).to(torch_device))
        if torch_device == "cuda":
            torch.cuda.synchronize()
        hf_s = time.perf_counter() - start
    n_hf = sum(len(rows) for rows, _, _ in hf_runs)
    return {"model": size, "items": trie.num_items, "users": len(examples), "hf_users": n_hf, "batch": batch,
            "recjax_users_per_s": len(examples) / recjax_s, "hf_users_per_s": n_hf / hf_s,
            "speedup_vs_hf": (len(examples) / recjax_s) / (n_hf / hf_s)}


# ------------------------------------------------------------------------------------------ beauty

def beauty_stage(gin_file: str, data_dir: str, out_dir: str, minutes: float, batch: int, warmup_steps: int,
                 eval_users, eval_batch: int, min_steps: int, bindings=(), name: str = "beauty", select: bool = False):
    """A from-scratch run of `gin_file` on `data_dir` for about `minutes` (steps sized from a
    measured warm-up run), then test retrieval on `eval_users` users (None: every user) with the
    final params, or (select) with the best on validation (EVAL_PERIOD a tenth of the run)."""
    import gin

    import tasks
    from recjax import checkpoints, gin_utils, train_lib
    from recjax.evaluation import EvalOptions, evaluate_tasks
    from recjax.model import EncoderDecoderModel

    def run(model_dir: str, steps: int):
        gin.clear_config()
        run_bindings = [f"DATA_DIR = '{data_dir}'", *bindings, f"MODEL_DIR = '{model_dir}'",
                        f"TRAIN_STEPS = {steps}", f"BATCH_SIZE = {batch}", "train_lib.train.loader = 'grain'",
                        "train_lib.train.progress = False", "train_lib.train.async_checkpointing = False",
                        f"train_lib.train.checkpoint_period = {steps}"]
        if select:
            run_bindings.append(f"EVAL_PERIOD = {max(1, steps // 10)}")
        gin_utils.parse_gin([gin_file], run_bindings)
        start = time.perf_counter()
        state = train_lib.train()
        return state, time.perf_counter() - start

    # A short run measures the steps per second (its compile included), then the real run
    # (warmup_steps 0: min_steps, unmeasured).
    steps = min_steps
    if warmup_steps:
        _, warm_s = run(os.path.join(out_dir, f"{name}_warmup"), warmup_steps)
        steps = max(min_steps, int(warmup_steps * minutes * 60 / warm_s))
    model_dir = os.path.join(out_dir, name)
    state, train_s = run(model_dir, steps)
    params, tested_step = state.params, steps
    if select:  # the best on validation, and its step
        with checkpoints.Checkpoint(model_dir) as run_checkpoint:
            params, tested_step = run_checkpoint.restore_params(checkpoints.BEST)
    registered = tasks.registered("beauty")
    model = EncoderDecoderModel(gin.query_parameter("train_lib.train.model_config").scoped_configurable_fn())
    start = time.perf_counter()
    [result] = evaluate_tasks(model, params, registered.tasks["retrieval"], "test",
                              options=EvalOptions(batch_size=eval_batch, max_examples=eval_users, progress=False))
    rows = [json.loads(line) for line in open(os.path.join(model_dir, "metrics.jsonl"))]
    rates = [r["examples_per_sec"] for r in rows if r.get("split") == "train" and "examples_per_sec" in r]
    return {"gin_file": gin_file, "data_dir": data_dir, "steps": steps, "batch": batch, "train_seconds": train_s,
            "windows_per_s": statistics.median(rates) if rates else None, "selected_step": tested_step,
            "eval_seconds": time.perf_counter() - start, "users": result.num_examples,
            **{k: result.metrics[k] for k in ("hit@10", "ndcg@10", "hit@5", "ndcg@5")}}


# -------------------------------------------------------------------------------------------- main

def markdown(report: dict) -> str:
    d = report["devices"]
    lines = [f"Device check: {d['count']} x {d['device']} ({d['platform']}), jax {d['jax']}, "
             f"torch {report['torch']}{' (CPU smoke)' if report['cpu_smoke'] else ''}", ""]
    if report.get("train"):
        lines += ["| model | params | batch x in/tgt | recjax tok/s | torch tok/s | speed-up | TFLOP/step | MFU |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['params_M']}M | {r['batch']} x {r['inputs']}/{r['targets']} | "
                  f"{r['recjax_tokens_per_s']:,.0f} | {r['torch_tokens_per_s']:,.0f} | {r['speedup_vs_torch']:.2f}x | "
                  f"{r['model_tflops_per_step']:.3f} | {100 * r['mfu']:.1f} % |" for r in report["train"]]
        lines.append("")
    if report.get("decode"):
        r = report["decode"]
        lines += ["| decode (beam 20, constrained) | items | users | recjax users/s | HF generate users/s | speed-up |",
                  "|---|---|---|---|---|---|",
                  f"| {r['model']}-shaped, random | {r['items']:,} | {r['users']} / {r['hf_users']} | "
                  f"{r['recjax_users_per_s']:,.1f} | {r['hf_users_per_s']:,.2f} | {r['speedup_vs_hf']:.1f}x |", ""]
    runs = [report[k] for k in ("beauty", "tiger") if report.get(k)]
    if runs:
        lines += ["| from-scratch run | steps x batch | windows/s | train s | tested step | eval s | users | hit@10 | NDCG@10 |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {os.path.basename(r['gin_file'])} on {os.path.basename(r['data_dir'])} | {r['steps']} x {r['batch']} | "
                  f"{r['windows_per_s'] or 0:,.0f} | {r['train_seconds']:.0f} | {r['selected_step']} | {r['eval_seconds']:.0f} | "
                  f"{r['users']:,} | {r['hit@10']:.4f} | {r['ndcg@10']:.4f} |" for r in runs]
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/device_check", help="where check.json and check.md go")
    p.add_argument("--cpu-smoke", dest="cpu_smoke", action="store_true", help="every stage, tiny sizes, on the CPU")
    p.add_argument("--stages", default="train,decode,beauty", help="of train,decode,beauty,tiger")
    p.add_argument("--data_dir", default=".device/beauty_collaborative", help="prepared dataset (recjax index)")
    p.add_argument("--vocab", default=".device/spiece.model", help="FLAN-T5's SentencePiece model")
    p.add_argument("--gin_file", default="gin/repro/ids/collaborative.gin")
    p.add_argument("--peak_tflops", type=float, default=989.0, help="dense bf16 peak (H100/H200 SXM: 989)")
    p.add_argument("--beauty_minutes", type=float, default=4.0)
    p.add_argument("--tiger_data_dir", default=".device/beauty_semantic_rqvae", help="Beauty with semantic IDs")
    p.add_argument("--tiger_minutes", type=float, default=5.0)
    args = p.parse_args(argv)
    os.chdir(REPO)
    smoke = args.cpu_smoke
    stages = args.stages.split(",")
    needed = []  # before any work: the staged datasets and vocabulary, and the flags that name them
    if {"decode", "beauty"} & set(stages):
        needed += [(args.data_dir, "prepared dataset", "--data_dir and --vocab"),
                   (args.vocab, "SentencePiece vocabulary", "--data_dir and --vocab")]
    if "tiger" in stages:
        needed.append((args.tiger_data_dir, "prepared dataset with semantic IDs", "--tiger_data_dir"))
    for path, what, flags in needed:
        if not os.path.exists(path):
            print(f"check.sh: error: {path}: no {what}; run `bash benchmarks/device/check.sh --stage-data` "
                  f"first (or pass {flags})", file=sys.stderr)
            return 2
    if smoke:  # as on the GPU machine: no TensorFlow, no SeqIO
        for name in ("tensorflow", "seqio", "tensorflow_datasets", "tensorflow_text"):
            sys.modules[name] = None
    import torch

    torch_device = "cuda" if torch.cuda.is_available() and not smoke else "cpu"
    report = {"cpu_smoke": smoke, "devices": _devices(), "torch": torch.__version__, "command": " ".join(sys.argv)}
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    if "train" in stages:
        report["train"] = (train_stage(["tiny"], 4, 64, 8, 2, args.peak_tflops, torch_device) if smoke else
                           train_stage(["small", "base"], 64, 512, 32, 10, args.peak_tflops, torch_device))
        print(markdown({**report, "decode": None, "beauty": None}), flush=True)
    if "decode" in stages or "beauty" in stages:
        import tasks

        registered = tasks.register_dataset(args.data_dir, "beauty", args.vocab, item_text=False)
    if "decode" in stages:
        report["decode"] = (decode_stage(registered, "tiny", 16, 4, 8, torch_device) if smoke else
                            decode_stage(registered, "small", 1024, 64, 64, torch_device))
    if "beauty" in stages:
        vocab = [f"VOCAB_PATH = '{args.vocab}'"]
        report["beauty"] = (beauty_stage(args.gin_file, args.data_dir, args.out, 0.05, 8, 0, 64, 16, 4, vocab)
                            if smoke else
                            beauty_stage(args.gin_file, args.data_dir, args.out, args.beauty_minutes, 128,
                                         200, None, 512, 1000, vocab))
    if "tiger" in stages:  # TIGER's own gin: its code-only vocabulary, 64 packed rows, validation
        gin_file, data = "gin/baselines/tiger_beauty.gin", args.tiger_data_dir
        bf16 = ["ACTIVATION_DTYPE = 'bfloat16'", "VALIDATION_EXAMPLES = 2048", "PATIENCE = None"]
        report["tiger"] = (beauty_stage(gin_file, data, args.out, 0.05, 8, 0, 64, 16, 4,
                                        ["VALIDATION_EXAMPLES = 16", "TASK_FEATURE_LENGTHS = {'inputs': 88, 'targets': 10}"],
                                        name="tiger", select=True)
                           if smoke else
                           beauty_stage(gin_file, data, args.out, args.tiger_minutes, 64, 200, None, 512, 1000, bf16,
                                        name="tiger", select=True))
    report["seconds"] = time.perf_counter() - t0
    text = markdown(report)
    with open(os.path.join(args.out, "check.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(args.out, "check.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    print(f"wrote {args.out}/check.json and check.md ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
