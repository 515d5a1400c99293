"""`recjax index --scheme SCHEME --src DATA --out DATA_SCHEME`: a prepared dataset re-written with
another item-identifier scheme (random, sequential, collaborative, semantic_rqkmeans,
semantic_rqvae), built from the training split only. Prints codebook usage, collisions, the
prefix tree's shape and the model vocabulary size the IDs need.

    recjax index --scheme semantic_rqkmeans --embeddings text --src data/beauty --out data/beauty_rqkmeans
    recjax index --scheme collaborative --levels 3 --codebook_size 32 --src data/beauty --out data/beauty_cid
    recjax index --scheme semantic_rqvae --balanced --src data/beauty --out data/beauty_rqvae_balanced
"""
from __future__ import annotations

import argparse
import sys
import time

from recjax import exit_codes
from recjax.items import embeddings, schemes
from recjax.items.reindex import describe


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recjax index", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", required=True, help="a prepared dataset (recjax prepare)")
    p.add_argument("--out", required=True, help="the re-indexed dataset to write (must not exist unless --overwrite)")
    p.add_argument("--scheme", required=True, help=f"one of {', '.join(schemes.SCHEMES)}")
    p.add_argument("--levels", type=int, default=3, help="L, codes per item before the collision code (default 3)")
    p.add_argument("--codebook_size", type=int, default=256, help="K, values per level (default 256, as TIGER)")
    p.add_argument("--embeddings", default="text", help=f"semantic schemes: {', '.join(embeddings.EMBEDDING_SOURCES)} (default text)")
    p.add_argument("--embedding_dim", type=int, default=128, help="dimension of text / collaborative embeddings")
    p.add_argument("--text_weighting", default="tfidf", help="text embeddings: tfidf or bm25")
    p.add_argument("--window", type=int, default=3, help="co-occurrence window of the collaborative graph")
    p.add_argument("--embeddings_file", help="--embeddings file: a [num_items, dim] .npy matrix")
    p.add_argument("--checkpoint", help="--embeddings t5: a recjax checkpoint (e.g. from recjax convert)")
    p.add_argument("--vocab", help="--embeddings t5: its SentencePiece model")
    p.add_argument("--rqvae_steps", type=int, default=3000, help="training steps of the RQ-VAE")
    p.add_argument("--balanced", action="store_true",
                   help="structured schemes: codes under capacities, so no code holds more than ceil(n / K) items "
                        "and no prefix of g <= K items shares its last code (no collision there)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--records", type=int, default=0, metavar="N",
                   help="also write the users as N ArrayRecord shards (users='per_process' reads them)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    return p


def _t5_encoder(args):
    from recjax.encoder_embeddings import t5_encoder

    return t5_encoder(args.checkpoint, args.vocab)


# flag -> the IndexOptions field it sets
_FLAG_OPTIONS = {"--levels": "levels", "--codebook_size": "codebook_size", "--embeddings": "embeddings",
                 "--embedding_dim": "embedding_dim", "--text_weighting": "text_weighting", "--window": "window",
                 "--embeddings_file": "embeddings_file", "--checkpoint": "checkpoint", "--vocab": "vocab_path",
                 "--rqvae_steps": "rqvae_steps", "--balanced": "balanced"}


def _ignored_flag(argv: list[str], args) -> str | None:
    """A flag given on the command line that the scheme (and embedding source) would not read."""
    read = schemes.options_read(args.scheme, args.embeddings)
    given = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    for flag, option in _FLAG_OPTIONS.items():
        if flag in given and option not in read:
            what = f"--scheme {args.scheme}" + (f" --embeddings {args.embeddings}" if "embeddings" in read else "")
            reads = sorted(f for f, o in _FLAG_OPTIONS.items() if o in read)
            return (f"{flag} is not read by {what} (it reads {', '.join(reads) or 'no option but --seed'}); "
                    f"leave it out")
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.scheme in schemes.SCHEMES:
        ignored = _ignored_flag(argv, args)
        if ignored:
            return exit_codes.report("index", ignored)
    try:
        options = schemes.IndexOptions(
            scheme=args.scheme, levels=args.levels, codebook_size=args.codebook_size, embeddings=args.embeddings,
            embedding_dim=args.embedding_dim, text_weighting=args.text_weighting, window=args.window,
            embeddings_file=args.embeddings_file, checkpoint=args.checkpoint, vocab_path=args.vocab,
            encode_items=_t5_encoder(args) if args.embeddings == "t5" else None,
            rqvae_steps=args.rqvae_steps, balanced=args.balanced, seed=args.seed)
        from recjax.items.reindex import reindex

        start = time.time()
        _, index = reindex(args.src, args.out, options, overwrite=args.overwrite,
                           log=lambda s: print(s, file=sys.stderr), records=args.records)
    except (ValueError, OSError) as e:
        return exit_codes.report("index", e)
    for line in describe(index):
        print(line, file=sys.stderr if line.startswith("warning: ") else sys.stdout)
    print(f"wrote {args.out} ({time.time() - start:.1f} s)")
    return 0

