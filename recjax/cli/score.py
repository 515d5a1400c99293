r"""`recjax score`: JSONL of {"inputs", "targets"} in, the log-likelihood of each target out.

    recjax score --checkpoint runs/beauty/checkpoints --vocab spiece.model \
        --input pairs.jsonl --output scores.jsonl [--batch_size 32] [--max_inputs_length 512]

Each output line answers the input line at the same position (blank lines skipped):
    {"inputs": ..., "targets": ..., "log_likelihood": -12.3, "num_target_tokens": 5}
where log_likelihood = sum over the target's tokens (EOS included) of log p(token | inputs,
previous tokens), what T5X's `score_batch` returns; `"inputs_truncated": true` is added when the
inputs were trimmed to --max_inputs_length. A line that cannot be scored (not JSON, a missing or
non-string field, a target over --max_targets_length, bytes that are not UTF-8) gives `{"line": N, "error": "..."}` and
the other lines are still scored. The output appears all at once (written to a temporary file,
then renamed). Library: `recjax.scoring.score_file(...)`.
"""
from __future__ import annotations

import argparse
import os

from recjax import exit_codes
from recjax.cli.arguments import step_arg
from recjax.scoring import score_file


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recjax score", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="recjax checkpoint directory (recjax convert / train output)")
    p.add_argument("--step", type=step_arg, default=None, help="checkpoint step, or 'best' (default: the newest)")
    p.add_argument("--vocab", required=True, help="SentencePiece model (FLAN-T5's spiece.model)")
    p.add_argument("--input", required=True, help="JSONL, one {\"inputs\": str, \"targets\": str} per line")
    p.add_argument("--output", required=True, help="JSONL to write (replaced if it exists)")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--max_inputs_length", type=int, default=None,
                   help="trim longer inputs (with EOS) to this many tokens, as SeqIO does (default: no limit)")
    p.add_argument("--max_targets_length", type=int, default=None,
                   help="targets longer than this (with EOS) are per-line errors (default: no limit)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default=None,
                   help="activation dtype (default: the checkpoint's model config)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        counts = score_file(args.checkpoint, args.vocab, args.input, args.output, batch_size=args.batch_size,
                            max_inputs_length=args.max_inputs_length, max_targets_length=args.max_targets_length,
                            step=args.step, dtype=args.dtype, progress=not args.no_progress)
    except (ValueError, OSError) as e:  # CheckpointError is a ValueError
        return exit_codes.report("score", e)
    print(f"wrote {os.path.abspath(args.output)}: {counts['scored']} scored, {counts['errors']} line error(s)")
    return 0

