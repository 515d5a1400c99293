"""`recjax convert --from hf|t5x --src ... --dst ...`: HF or T5X checkpoint -> recjax checkpoint.

The readers and `convert(...)` are in `recjax.conversion`: HF `T5ForConditionalGeneration`
directories (safetensors, sharded or not, or pytorch_model.bin) and T5X checkpoints (msgpack,
TensorStore or orbax); the output is written to a temporary directory renamed onto `--dst`.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Optional

from recjax import exit_codes
from recjax.conversion import convert


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recjax convert", description=__doc__.split("\n")[0])
    p.add_argument("--from", dest="source_format", required=True, metavar="{hf,t5x}",
                   help="format of --src: hf (T5ForConditionalGeneration dir) or t5x (checkpoint file/dir)")
    p.add_argument("--src", required=True, help="the checkpoint to convert")
    p.add_argument("--dst", required=True, help="the recjax checkpoint directory to write (must not exist)")
    p.add_argument("--step", type=int, default=0, help="step number of the written checkpoint (default 0)")
    p.add_argument("--vocab_size", type=int, help="grow the vocabulary to this many ids (the VOCAB_SIZE that "
                   "`recjax index` prints for structured item IDs); old rows are kept exactly")
    p.add_argument("--seed", type=int, default=0, help="seed of the new rows' noise (with --vocab_size)")
    p.add_argument("--overwrite", action="store_true", help="replace --dst if it exists")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config, n = convert(args.source_format, args.src, args.dst, overwrite=args.overwrite, step=args.step,
                            vocab_size=args.vocab_size, seed=args.seed)
    except (ValueError, OSError) as e:  # CheckpointError is a ValueError; files missing or present
        return exit_codes.report("convert", e)
    print(f"wrote {os.path.abspath(args.dst)} (step {args.step}): {n:,} params; "
          f"config {json.dumps(config.to_dict(), sort_keys=True)}")
    return 0

