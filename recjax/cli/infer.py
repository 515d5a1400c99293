"""`recjax infer --gin_file=gin/tasks/NAME.gin --checkpoint DIR --input users.jsonl --output recs.jsonl`.

Top-k recommendations for user histories. Each input line is a JSON object

    {"user": "any id, echoed", "history": ["5046", "2279"], "titles": ["optional", "texts"]}

(`history`: items oldest first, as the dataset writes their IDs or by their original IDs, e.g.
Amazon ASINs; `titles`: optional texts shown instead of the catalog's). Each output line answers
the input line with the same number:

    {"line": 1, "user": "...", "recommendations": [{"rank": 1, "item_id": "3757",
      "original_id": "B00...", "title": "...", "score": -3.21}, ...]}

or, for a line that cannot be answered (bytes that are not UTF-8, malformed JSON, no history,
an unknown item ID, more than 1,000 history items, a line over 1 MiB, ...),
`{"line": N, "user": "...", "error": "one-line reason"}` ("user" when it could be read); every
other line is still answered. `score` is the
summed log-probability of the item ID. The histories are rendered with the dataset's retrieval
template (`--template`, default 0), its `max_history` and its item rendering, by the code that
renders the training examples (`ExampleBuilder.retrieval_inputs`); the model writes IDs with constrained
beam search (every recommendation is a real item) that excludes the history unless
--keep_history. The output file appears complete or not at all.
"""
from __future__ import annotations

import argparse
import os
import sys

from recjax import exit_codes, gin_utils
from recjax.cli.arguments import step_arg

def main(argv: list[str]) -> int:
    files, bindings, search, rest = gin_utils.split_gin_flags(argv)
    parser = argparse.ArgumentParser(prog="recjax infer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="recjax checkpoint directory (or a train MODEL_DIR)")
    parser.add_argument("--step", type=step_arg, help="checkpoint step, or 'best' (default: the newest)")
    parser.add_argument("--input", required=True, help="JSONL of user histories")
    parser.add_argument("--output", required=True, help="JSONL of recommendations (written atomically)")
    parser.add_argument("--top_k", type=int, default=10)
    parser.add_argument("--beam_size", type=int, default=20, help="beams (at least top_k)")
    parser.add_argument("--batch_size", type=int, default=32, help="users per batch (a multiple of the devices)")
    parser.add_argument("--template", type=int, default=0, help="index of the retrieval template (tasks/TEMPLATES.md)")
    parser.add_argument("--inputs_length", type=int, default=512, help="encoder length; longer inputs are trimmed")
    parser.add_argument("--keep_history", action="store_true", help="allow items of the history to be recommended")
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(rest)
    if not files:
        parser.error("--gin_file is required: the dataset's gin/tasks/*.gin (catalog and vocabulary)")
    if args.top_k < 1:
        parser.error("--top_k must be >= 1")
    if not os.path.isfile(args.input):
        print(exit_codes.error_line(f"{args.input}: no such input file"), file=sys.stderr)
        return 2

    def run(_):
        import gin

        import tasks
        from recjax.checkpoints import Checkpoint
        from recjax.evaluation import catalog_of
        from recjax.recommend import run_infer
        from recjax.partitioning import Partitioner
        from recjax.restore import restore_model

        gin_utils.parse_gin(files, bindings, search)
        registered = tasks.register_dataset()
        partitioner = Partitioner.create()
        with Checkpoint(args.checkpoint) as checkpoint:
            checkpoint.check_item_ids(tasks.item_ids_record(registered.tasks["retrieval"]))
            model, params, step = restore_model(checkpoint, partitioner, args.step)
        catalog = catalog_of(registered.name, model.config.vocab_size)
        answered, errors = run_infer(
            model, params, catalog, args.input, args.output, template_index=args.template,
            builder=registered.builder, top_k=args.top_k, beam_size=args.beam_size,
            exclude_history=not args.keep_history, batch_size=args.batch_size, inputs_length=args.inputs_length,
            partitioner=partitioner, progress=not args.no_progress)
        del gin
        print(f"wrote {args.output}: {answered} users answered, {errors} lines with an error "
              f"(checkpoint step {step})")
        return 0

    return gin_utils.run_with_gin_errors(run, argv)

