"""The vocabulary item IDs are written in: SentencePiece files checked for T5's ids, the code
vocabulary of structured IDs (one piece per (level, code), appended after the sentinels), and
the rule that gives a model's `VOCAB_SIZE` for a dataset and a base vocabulary.

`vocab_size` is a Gin configurable, so an experiment derives the number instead of copying what
`recjax index` prints:

    VOCAB_SIZE = @items.vocab_size()
    items.vocab_size.data_dir = %DATA_DIR
    items.vocab_size.vocab_path = %VOCAB_PATH
"""
from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import zlib

import gin
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from recjax.config import padded_vocab_size

DEFAULT_EXTRA_IDS = 100  # T5's sentinels for span corruption (MLM)
T5_SPECIAL_IDS = {"pad": 0, "eos": 1, "unk": 2}


def check_model(path: str) -> None:
    """One-line FileNotFoundError / ValueError for a vocabulary recjax cannot use."""
    path = os.fspath(path)
    if path.startswith("gs://") or "://" in path:
        raise ValueError(f"{path}: vocabulary must be a local file (recjax never reads remote paths)")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path}: SentencePiece vocabulary not found (set the VOCAB_PATH Gin macro to a local "
            f"spiece.model, e.g. ../shared/data/t5_tokenizer/spiece_rebuilt.model)")
    processor = spm.SentencePieceProcessor()
    try:
        processor.Load(path)
    except (OSError, RuntimeError) as e:
        raise ValueError(f"{path}: not a SentencePiece model ({str(e).splitlines()[0]})") from None
    got = {"pad": processor.pad_id(), "eos": processor.eos_id(), "unk": processor.unk_id()}
    if got != T5_SPECIAL_IDS:
        raise ValueError(f"{path}: special ids {got}, expected T5's {T5_SPECIAL_IDS}")


def write_model(proto, out_path: str) -> str:
    """Writes a SentencePiece ModelProto to `out_path` atomically (deterministic bytes)."""
    out_dir = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.NamedTemporaryFile("wb", dir=out_dir, prefix=".spm_tmp_", delete=False) as f:
        f.write(proto.SerializeToString(deterministic=True))
    os.replace(f.name, out_path)
    return out_path


def load_tokenizer(path: str, extra_ids: int = DEFAULT_EXTRA_IDS) -> spm.SentencePieceProcessor:
    """The SentencePiece processor `seqio.SentencePieceVocabulary(path, extra_ids).tokenizer` is,
    without seqio or TensorFlow: the model with its `extra_ids` sentinels added as seqio adds them
    (so every id is the same)."""
    check_model(path)
    proto = sentencepiece_model_pb2.ModelProto()
    with open(path, "rb") as f:
        proto.ParseFromString(f.read())
    user_defined = sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED
    for k in reversed(range(extra_ids)):  # seqio's order: <extra_id_0> gets the highest id
        proto.pieces.add(piece=f"\u2581<extra_id_{k}>", score=0.0, type=user_defined)
    return spm.SentencePieceProcessor(model_proto=proto.SerializeToString())


def item_code_vocabulary(base_path: str, pieces: list[str], out_dir: str,
                         extra_ids: int = DEFAULT_EXTRA_IDS) -> str:
    """Path of a SentencePiece model = the one at `base_path` + its `extra_ids` sentinels (in
    seqio's order, so every old id keeps its meaning) + one user-defined piece per item code
    (`recjax.items.schemes.code_pieces`), written once into `out_dir` and reused
    (`spiece_items_<hash>.model`). Load it with `load_tokenizer(path, extra_ids=0)`."""
    check_model(base_path)  # one-line errors for a missing / foreign base model
    with open(base_path, "rb") as f:
        base = f.read()
    digest = hashlib.sha256(base + "\n".join(pieces).encode("utf-8") + f"|{extra_ids}".encode()).hexdigest()[:12]
    path = os.path.join(out_dir, f"spiece_items_{digest}.model")
    if os.path.isfile(path):
        return path
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(base)
    existing = {p.piece for p in proto.pieces}
    user_defined = sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED
    sentinels = [f"\u2581<extra_id_{k}>" for k in reversed(range(extra_ids))]  # as seqio adds them
    for piece in sentinels + list(pieces):
        if piece in existing:
            raise ValueError(f"{base_path}: already has a piece {piece!r}; item codes need a plain T5 vocabulary")
        new = proto.pieces.add()
        new.piece, new.score, new.type = piece, 0.0, user_defined
    return write_model(proto, path)


def user_token_pieces(count: int) -> list[str]:
    """TIGER's hashed user tokens: `count` pieces `▁<u_0>` ... appended after the item codes."""
    return [f"\u2581<u_{k}>" for k in range(int(count))]


def user_token(user_key: str, count: int) -> str:
    """The token of a user (its original ID, hashed into `count` buckets, as TIGER does): a
    function of the user's identity alone, never of its items."""
    return f"<u_{zlib.crc32(str(user_key).encode('utf-8')) % int(count)}>"


def vocabulary_ids(base_pieces: int, code_pieces: int = 0, extra_ids: int = DEFAULT_EXTRA_IDS) -> int:
    """Ids of a task vocabulary: the base model's pieces, its sentinels, the item-code pieces."""
    return int(base_pieces) + int(extra_ids) + int(code_pieces)


@gin.configurable(module="items")
def vocab_size(data_dir: str = gin.REQUIRED, vocab_path: str = gin.REQUIRED,
               extra_ids: int = DEFAULT_EXTRA_IDS, user_tokens: int = 0) -> int:
    """The model vocab_size a prepared dataset needs with the base vocabulary at `vocab_path`:
    its pieces + sentinels + the dataset's item-code pieces (+ `user_tokens` hashed user tokens),
    padded to a multiple of 128 (what `recjax index` prints and `tasks.register_dataset` builds)."""
    return padded_vocab_size(_vocab_ids(os.fspath(data_dir), os.fspath(vocab_path), int(extra_ids)) + int(user_tokens))


@functools.lru_cache(maxsize=16)
def _vocab_ids(data_dir: str, vocab_path: str, extra_ids: int) -> int:
    from recjax.data.prepared import load_prepared  # late: the data layer reads the dataset

    check_model(vocab_path)
    base = spm.SentencePieceProcessor(model_file=vocab_path).GetPieceSize()
    pieces = load_prepared(data_dir).code_pieces or []
    return vocabulary_ids(base, len(pieces), extra_ids)
