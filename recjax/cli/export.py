"""`recjax export`: a recjax checkpoint -> an HF directory, or a bfloat16 params-only checkpoint.

    recjax export --checkpoint DIR --out DIR --format hf [--vocab spiece.model] [--step N]
    recjax export --checkpoint DIR --out DIR --format params_bf16 [--step N]

--checkpoint takes a checkpoint directory or a train run's MODEL_DIR. The writers are in
`recjax.exporting` (which says what each format holds).
"""
from __future__ import annotations

import argparse
import os
from typing import Optional

from recjax import exit_codes
from recjax.cli.arguments import step_arg
from recjax.exporting import DEFAULT_MAX_SHARD_SIZE, export


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recjax export", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="recjax checkpoint directory")
    p.add_argument("--out", required=True, help="directory to write (must not exist)")
    p.add_argument("--format", dest="output_format", default="hf", metavar="{hf,params_bf16}",
                   help="hf: safetensors + config.json; params_bf16: bfloat16 params-only recjax checkpoint")
    p.add_argument("--vocab", help="SentencePiece model to ship as the HF tokenizer (spiece.model)")
    p.add_argument("--step", type=step_arg, help="checkpoint step, or 'best' (default: the newest)")
    p.add_argument("--max_shard_size", default=DEFAULT_MAX_SHARD_SIZE, help="split safetensors above this size")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        files = export(args.checkpoint, args.out, args.output_format, vocab=args.vocab, step=args.step,
                       overwrite=args.overwrite, max_shard_size=args.max_shard_size)
    except (ValueError, OSError) as e:  # CheckpointError is a ValueError; files missing or present
        return exit_codes.report("export", e)
    print(f"wrote {os.path.abspath(args.out)} ({args.output_format}): {', '.join(files)}")
    return 0

