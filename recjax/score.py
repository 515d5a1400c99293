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
then renamed). Library: `score_file(...)`; the pieces are in `recjax.scoring`.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

from recjax import exit_codes, scoring
from recjax.data import jsonl


def score_file(checkpoint: str, vocab: str, input_path: str, output_path: str, *, batch_size: int = 32,
               max_inputs_length: Optional[int] = None, max_targets_length: Optional[int] = None,
               step: Optional[int] = None, dtype: Optional[str] = None, progress: bool = True) -> dict[str, int]:
    """Scores every line of `input_path` into `output_path`; returns {"scored": n, "errors": m}.

    Raises ValueError / FileNotFoundError (one line, naming the file) for a missing or invalid
    input, vocabulary or checkpoint; per-line problems become error records instead.
    """
    from recjax.checkpoints import Checkpoint
    from recjax.partitioning import Partitioner
    from recjax.restore import restore_model
    from tasks import load_vocabulary

    if batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {batch_size}")
    for name, value in (("--max_inputs_length", max_inputs_length), ("--max_targets_length", max_targets_length)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not os.path.isfile(input_path):
        raise FileNotFoundError(f"{input_path}: input JSONL not found")
    vocabulary = load_vocabulary(vocab)
    partitioner = Partitioner.create()
    with Checkpoint(checkpoint) as ckpt:
        model, params, _ = restore_model(ckpt, partitioner, step, dtype=dtype)
    config = model.config
    if vocabulary.vocab_size > config.vocab_size:
        raise ValueError(f"{vocab}: {vocabulary.vocab_size} ids (with sentinels) do not fit the model's "
                         f"vocab_size {config.vocab_size} ({checkpoint})")
    examples, errors = scoring.read_numbered(jsonl.read_lines(input_path), vocabulary,
                                             max_inputs_length=max_inputs_length,
                                             max_targets_length=max_targets_length)
    scorer = scoring.Scorer(model, params, partitioner)
    results = scoring.score_examples(scorer, examples, partitioner.round_batch(batch_size), max_inputs_length=max_inputs_length,
                                     max_targets_length=max_targets_length, progress=progress)
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    jsonl.write_jsonl(output_path, scoring.output_records(results, errors))
    return {"scored": len(results), "errors": len(errors)}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recjax score", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="recjax checkpoint directory (recjax convert / train output)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest)")
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
