"""SentencePiece vocabularies: load one from a local path, or train a small one on a dataset's text.

Real runs point `VOCAB_PATH` at FLAN-T5's own `spiece.model` (here
`../shared/data/t5_tokenizer/spiece_rebuilt.model`). The embedded default (quickstart, CI) needs no
file from outside the repo, so `dataset_vocabulary` trains a small SentencePiece model on the
prepared dataset's own item text and the task templates, sized to that corpus.

Both kinds obey T5's id conventions (pad=0, eos=1, unk=2, no bos) and get `extra_ids=100`
sentinels (`<extra_id_0>` = the highest id) on top, as `seqio.SentencePieceVocabulary` adds them.
"""
from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable

import gin
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from recjax.items.vocabulary import DEFAULT_EXTRA_IDS, check_model, write_model

TRAINER_VERSION = 1  # bump when train_sentencepiece's options change: cached vocabularies retrain


def load_vocabulary(path: str, extra_ids: int = DEFAULT_EXTRA_IDS):
    """`seqio.SentencePieceVocabulary` of a local SentencePiece model, checked eagerly.

    Raises FileNotFoundError / ValueError with a one-line message naming `path` when the file is
    missing, is not a SentencePiece model, or does not use T5's pad=0, eos=1, unk=2.
    """
    import seqio  # late: importing seqio pulls in TensorFlow

    check_model(path)
    return seqio.SentencePieceVocabulary(os.fspath(path), extra_ids=extra_ids)


def train_sentencepiece(texts: Iterable[str], out_path: str, vocab_size: int) -> str:
    """Trains a unigram SentencePiece model on `texts` and writes it atomically to `out_path`.

    pad=0, eos=1, unk=2, no bos (T5's layout), NFKC normalization, byte fallback (no `<unk>` on
    unseen characters). `vocab_size` is an upper bound: a corpus too small for it gets the
    largest vocabulary it supports instead of SentencePiece's "Vocabulary size too high".
    Deterministic: the same texts and size give a byte-identical file (single-threaded, no input
    sampling or shuffling). Returns `out_path`.
    """
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise ValueError(f"{out_path}: cannot train a SentencePiece model on an empty corpus")
    if vocab_size < 300:
        raise ValueError(f"vocab_size must be >= 300 (256 byte pieces + specials + text), got {vocab_size}")
    model = io.BytesIO()
    spm.SentencePieceTrainer.Train(
        sentence_iterator=iter(texts),
        model_writer=model,  # in memory: no temporary files
        model_type="unigram",
        vocab_size=vocab_size,
        hard_vocab_limit=False,  # size to the corpus instead of failing
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        character_coverage=1.0,
        byte_fallback=True,
        normalization_rule_name="nmt_nfkc",
        num_threads=1,  # determinism
        shuffle_input_sentence=False,
        input_sentence_size=0,
        minloglevel=2,
    )
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model.getvalue())
    proto.trainer_spec.ClearField("model_prefix")  # would record a path: keep the file reproducible
    return write_model(proto, out_path)


def vocabulary_corpus(dataset) -> list[str]:
    """The text a dataset's own vocabulary is trained on: every item as the tasks render it, and
    every template phrasing (so instruction words get whole pieces)."""
    from tasks import kinds, templates  # late: avoids a cycle at import

    corpus = [templates.item_text(item_id, title) for item_id, title in
              zip(dataset.item_ids, dataset.item_titles)]
    corpus += kinds.all_template_text() * 20  # weight instructions like frequent text
    return corpus


@gin.configurable(module="tasks")
def dataset_vocabulary(data_dir: str = gin.REQUIRED, vocab_size: int = 2000,
                       out_dir: str | None = None) -> str:
    """Path of a SentencePiece model trained on the prepared dataset at `data_dir`, trained on
    first use and reused after (`<out_dir or data_dir>/spiece_<vocab_size>_<hash>.model`, the hash
    over the corpus and TRAINER_VERSION so a changed dataset, template set or trainer gets a new
    file)."""
    from recjax.data import load_prepared

    dataset = load_prepared(data_dir)
    corpus = vocabulary_corpus(dataset)
    digest = hashlib.sha256(f"v{TRAINER_VERSION}\n".encode() + "\n".join(corpus).encode("utf-8")).hexdigest()[:12]
    path = os.path.join(out_dir or data_dir, f"spiece_{vocab_size}_{digest}.model")
    if not os.path.isfile(path):
        train_sentencepiece(corpus, path, vocab_size)
    return path


@gin.configurable(module="tasks")
def code_vocabulary(data_dir: str = gin.REQUIRED, out_dir: str | None = None) -> str:
    """Path of the smallest base vocabulary, for models trained from scratch on item codes only
    (TIGER's form: `register_dataset(input_form='codes')`): T5's pad, EOS and unk plus the word
    boundary; `register_dataset` adds the sentinels and the dataset's code pieces, so a Beauty run
    with collaborative IDs (171 codes) has 275 ids, 384 rows padded, instead of 32,384. Text
    outside the codes reads as <unk>: use it for the retrieval task in its codes form only.
    Written once (`<out_dir or data_dir>/spiece_codes_only.model`)."""
    from recjax.data import load_prepared

    if not load_prepared(data_dir).code_pieces:
        raise ValueError(f"{data_dir}: a code vocabulary needs structured item IDs (its items have no code pieces; "
                         "run `recjax index` on it)")
    path = os.path.join(out_dir or data_dir, "spiece_codes_only.model")
    if os.path.isfile(path):
        return path
    piece = sentencepiece_model_pb2.ModelProto.SentencePiece
    proto = sentencepiece_model_pb2.ModelProto()
    spec = proto.trainer_spec
    spec.model_type, spec.vocab_size = sentencepiece_model_pb2.TrainerSpec.UNIGRAM, 4
    spec.pad_id, spec.eos_id, spec.unk_id, spec.bos_id = 0, 1, 2, -1
    # As FLAN-T5's: a dummy prefix, so "<a_1><b_2>.. <a_3>.." reads ▁<a_1>, <b_2>, .., ▁<a_3>, .. (the
    # first level's pieces carry the word boundary): four tokens per item, no separator tokens.
    proto.normalizer_spec.name, proto.normalizer_spec.add_dummy_prefix = "identity", True
    proto.normalizer_spec.remove_extra_whitespaces = True
    for text, kind in (("<pad>", piece.CONTROL), ("</s>", piece.CONTROL), ("<unk>", piece.UNKNOWN),
                       ("\u2581", piece.NORMAL)):
        proto.pieces.add(piece=text, score=0.0, type=kind)
    return write_model(proto, path)


def sentinel_ids(vocabulary, count: int = DEFAULT_EXTRA_IDS):
    """int32 [count] ids of `<extra_id_0>`, `<extra_id_1>`, ... looked up by name (they are the
    highest ids of a plain vocabulary, and sit below the item-code pieces of a grown one)."""
    import numpy as np

    processor = getattr(vocabulary, "tokenizer", vocabulary)  # a seqio vocabulary or a processor
    ids = [processor.piece_to_id(f"\u2581<extra_id_{k}>") for k in range(count)]  # seqio's piece names
    if any(i == processor.unk_id() for i in ids):
        raise ValueError(f"{getattr(vocabulary, 'sentencepiece_model_file', 'the vocabulary')}: "
                         f"has no <extra_id_0..{count - 1}> sentinels")
    return np.asarray(ids, np.int32)
