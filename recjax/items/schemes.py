"""Item-identifier schemes: how each item is written by the model. The one home of this concept:
a new scheme is one function registered in `SCHEMES`.

Numeric schemes write an item as a decimal string that SentencePiece splits into pieces:
- `random`: a seeded permutation of "1".."N" (recjax's default);
- `sequential`: P5's numbering "i+1" in order of first appearance, which leaks the answer (the
  next item's ID is often the largest history ID + 1): for reproducing P5 only.

Structured schemes write an item as L + 1 tokens of its own, `<a_12><b_7><c_201><d_0>`: one
vocabulary entry per (level, code), appended after the SentencePiece vocabulary and its
sentinels (`recjax.items.vocabulary.item_code_vocabulary`), and a last level that makes colliding items
distinct (TIGER's extra code):
- `collaborative`: hierarchical k-means of the spectral (PPMI-SVD) embedding of the training
  co-occurrence graph (How to Index's collaborative indexing): items bought together share
  prefixes;
- `semantic_rqkmeans`: residual k-means of item embeddings (GRID, MiniOneRec);
- `semantic_rqvae`: TIGER's RQ-VAE trained in JAX.

Every scheme is built from the training split only (seq[:-2] of each user) or from no
interaction at all, so validation and test items cannot shape any identifier.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Callable

import numpy as np

from recjax.items import embeddings as emb
from recjax.items import quantize

NUMERIC_SCHEMES = ("random", "sequential")
STRUCTURED_SCHEMES = ("collaborative", "semantic_rqkmeans", "semantic_rqvae")
LEVEL_LETTERS = "abcdefgh"  # level l is written <letter_code>
MAX_LEVELS = len(LEVEL_LETTERS) - 1  # one letter is kept for the collision code
MAX_CODEBOOK_SIZE = 4096
WORD_START = "\u2581"  # SentencePiece's word-boundary marker
CODE_TOKEN = re.compile(r"<([a-h])_(\d+)>")


@dataclasses.dataclass(frozen=True)
class IndexOptions:
    """Options of `build_index` (the `recjax index` flags)."""

    scheme: str = "random"
    levels: int = 3  # L: codes per item before the collision code
    codebook_size: int = 256  # K: values per level
    embeddings: str = "text"  # source of the semantic schemes' embeddings (embeddings.EMBEDDING_SOURCES)
    embedding_dim: int = 128
    text_weighting: str = "tfidf"
    window: int = 3  # co-occurrence window (collaborative)
    embeddings_file: str | None = None
    checkpoint: str | None = None  # t5 embeddings
    vocab_path: str | None = None  # t5 embeddings
    # t5 embeddings: dataset -> [num_items, dim], from the model layer (recjax.encoder_embeddings)
    encode_items: Callable | None = dataclasses.field(default=None, compare=False, repr=False)
    rqvae_steps: int = 3000
    balanced: bool = False  # codes under capacities (quantize's module docstring): no crowded prefix
    seed: int = 0

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise ValueError(f"--scheme {self.scheme!r}: unknown; expected one of {', '.join(SCHEMES)}")
        if self.scheme in STRUCTURED_SCHEMES:
            if not (isinstance(self.levels, int) and 1 <= self.levels <= MAX_LEVELS):
                raise ValueError(f"--levels {self.levels!r}: expected an int in [1, {MAX_LEVELS}]")
            if not (isinstance(self.codebook_size, int) and 2 <= self.codebook_size <= MAX_CODEBOOK_SIZE):
                raise ValueError(f"--codebook_size {self.codebook_size!r}: expected an int in [2, {MAX_CODEBOOK_SIZE}]")
        if self.embeddings not in emb.EMBEDDING_SOURCES:
            raise ValueError(f"--embeddings {self.embeddings!r}: expected one of {', '.join(emb.EMBEDDING_SOURCES)}")
        if self.embedding_dim < 2:
            raise ValueError(f"--embedding_dim must be >= 2, got {self.embedding_dim}")
        if "embeddings" in options_read(self.scheme, self.embeddings):
            if self.embeddings == "file" and not self.embeddings_file:
                raise ValueError("--embeddings file needs --embeddings_file (a [num_items, dim] .npy matrix)")
            if self.embeddings == "t5" and not (self.checkpoint and self.vocab_path):
                raise ValueError("--embeddings t5 needs --checkpoint (a recjax checkpoint) and --vocab (its "
                                 "SentencePiece model)")


# The options each scheme reads, beyond `scheme` and `seed` (and, for the semantic schemes, what
# each embedding source reads): `recjax index` refuses a flag its scheme would ignore.
_STRUCTURED_OPTIONS = ("levels", "codebook_size", "balanced")
_EMBEDDING_OPTIONS = {"text": ("embedding_dim", "text_weighting"), "collaborative": ("embedding_dim", "window"),
                      "file": ("embeddings_file",), "t5": ("checkpoint", "vocab_path")}


def options_read(scheme: str, embeddings: str = "text") -> set[str]:
    """The IndexOptions fields `scheme` reads (with `embeddings` for the semantic schemes)."""
    if scheme in NUMERIC_SCHEMES:
        return {"scheme", "seed"}
    if scheme == "collaborative":
        return {"scheme", "seed", *_STRUCTURED_OPTIONS, "embedding_dim", "window"}
    read = {"scheme", "seed", "embeddings", *_STRUCTURED_OPTIONS, *_EMBEDDING_OPTIONS.get(embeddings, ())}
    return read | ({"rqvae_steps"} if scheme == "semantic_rqvae" else set())


@dataclasses.dataclass
class ItemIndex:
    """The identifiers of a catalog under one scheme."""

    scheme: str
    item_ids: list[str]  # the text the model writes for item i
    codes: np.ndarray | None = None  # int32 [num_items, L + 1] for structured schemes
    code_pieces: list[str] | None = None  # vocabulary pieces the IDs need, in id order
    info: dict = dataclasses.field(default_factory=dict)  # options and figures, kept in prepared.json


# ------------------------------------------------------------------------------------------------
# Rendering of code sequences.
# ------------------------------------------------------------------------------------------------

def code_text(codes) -> str:
    """[L + 1] codes -> "<a_12><b_7><c_201><d_0>"."""
    return "".join(f"<{LEVEL_LETTERS[level]}_{int(c)}>" for level, c in enumerate(codes))


def code_pieces(level_sizes) -> list[str]:
    """The SentencePiece pieces of every (level, code): level 0 carries the word-start marker so an
    ID after a space (or at the start of a text) is exactly L + 1 pieces, with no separate "▁"."""
    pieces = []
    for level, size in enumerate(level_sizes):
        prefix = WORD_START if level == 0 else ""
        pieces += [f"{prefix}<{LEVEL_LETTERS[level]}_{c}>" for c in range(int(size))]
    return pieces


def parse_code_text(text: str) -> list[int]:
    """"<a_12><b_7>..." -> [12, 7, ...]; ValueError when it is not a well-formed code sequence."""
    found = CODE_TOKEN.findall(text)
    if not found or "".join(f"<{a}_{b}>" for a, b in found) != text.strip():
        raise ValueError(f"{text!r} is not a structured item ID (<a_N><b_N>...)")
    return [int(b) for _, b in found]


# ------------------------------------------------------------------------------------------------
# The schemes.
# ------------------------------------------------------------------------------------------------

def numeric_ids(num_items: int, scheme: str, seed: int) -> list[str]:
    """The numeric schemes' ID text (the catalog is in P5's sequential order)."""
    if scheme == "sequential":
        return [str(i + 1) for i in range(num_items)]
    if scheme == "random":
        perm = np.random.default_rng([seed, 1]).permutation(num_items)
        return [str(int(p) + 1) for p in perm]
    raise ValueError(f"numeric scheme must be one of {NUMERIC_SCHEMES}, got {scheme!r}")


def _numeric(dataset, options: IndexOptions, log) -> ItemIndex:
    return ItemIndex(options.scheme, numeric_ids(dataset.num_items, options.scheme, options.seed),
                     info={"scheme": options.scheme, "seed": options.seed})


def _structured(scheme: str, dataset, codes: np.ndarray, options: IndexOptions, extra: dict) -> ItemIndex:
    before = quantize.collision_stats(codes)
    full = quantize.dedup_codes(codes, options.seed)
    sizes = [options.codebook_size] * options.levels + [int(full[:, -1].max()) + 1]
    info = {"scheme": scheme, "levels": options.levels, "codebook_size": options.codebook_size,
            "balanced": options.balanced, "collision_code_size": sizes[-1], "seed": options.seed,
            "collisions": dict(before, largest_groups=quantize.largest_groups(codes)),
            "stats": quantize.code_stats(full, options.codebook_size), **extra}
    return ItemIndex(scheme, [code_text(c) for c in full], full, code_pieces(sizes), info)


def _embeddings(dataset, options: IndexOptions, log) -> np.ndarray:
    log(f"item embeddings: {options.embeddings}")
    x = emb.item_embeddings(dataset, options.embeddings, dim=options.embedding_dim, seed=options.seed,
                            text_weighting=options.text_weighting, window=options.window,
                            path=options.embeddings_file, checkpoint=options.checkpoint,
                            encode_items=options.encode_items)
    log(f"  {x.shape[0]} x {x.shape[1]}")
    return x


def _embedding_info(options: IndexOptions) -> dict:
    info = {"embeddings": options.embeddings, "embedding_dim": options.embedding_dim}
    if options.embeddings == "text":
        info["text_weighting"] = options.text_weighting
    if options.embeddings == "collaborative":
        info["window"] = options.window
    if options.embeddings == "file":
        info["embeddings_file"] = options.embeddings_file
    if options.embeddings == "t5":
        info["checkpoint"] = options.checkpoint
    return info


def _collaborative(dataset, options: IndexOptions, log) -> ItemIndex:
    log("co-occurrence graph of the training sequences -> spectral embedding (PPMI-SVD)")
    x = emb.collaborative_embeddings(dataset, options.embedding_dim, options.window, options.seed)
    codes = quantize.hierarchical_kmeans(x, options.levels, options.codebook_size, options.seed,
                                       balanced=options.balanced)
    return _structured("collaborative", dataset, codes, options,
                       {"embeddings": "collaborative", "embedding_dim": options.embedding_dim, "window": options.window,
                        "clustering": "hierarchical_kmeans"})


def _semantic_rqkmeans(dataset, options: IndexOptions, log) -> ItemIndex:
    x = _embeddings(dataset, options, log)
    codes = quantize.rq_kmeans(x, options.levels, options.codebook_size, options.seed, balanced=options.balanced)
    return _structured("semantic_rqkmeans", dataset, codes, options, _embedding_info(options))


def _semantic_rqvae(dataset, options: IndexOptions, log) -> ItemIndex:
    x = _embeddings(dataset, options, log)
    codes, figures = quantize.rq_vae(x, options.levels, options.codebook_size, options.seed,
                                     steps=options.rqvae_steps, balanced=options.balanced, log=log)
    return _structured("semantic_rqvae", dataset, codes, options, {**_embedding_info(options), "rqvae": figures})


SCHEMES: dict[str, Callable] = {
    "random": _numeric,
    "sequential": _numeric,
    "collaborative": _collaborative,
    "semantic_rqkmeans": _semantic_rqkmeans,
    "semantic_rqvae": _semantic_rqvae,
}


def build_index(dataset, options: IndexOptions, log: Callable[[str], None] = lambda s: None) -> ItemIndex:
    """The identifiers of `dataset`'s items under `options.scheme`."""
    index = SCHEMES[options.scheme](dataset, options, log)
    if len(set(index.item_ids)) != dataset.num_items:
        raise AssertionError(f"scheme {options.scheme!r} gave duplicate IDs")  # dedup_codes makes this impossible
    return index
