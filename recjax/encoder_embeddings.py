"""Item embeddings from a T5 encoder (`recjax index --embeddings t5`): each item's text encoded
by a recjax checkpoint, mean-pooled over its real tokens. Lives above the data layer (it runs
the network); `recjax.items.schemes` receives it as `IndexOptions.encode_items`.
"""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import sentencepiece as spm

from recjax import checkpoints
from recjax import model_inputs
from recjax.config import EOS_ID
from recjax.items.embeddings import item_documents
from recjax.model import EncoderDecoderModel


def t5_encoder(checkpoint: str, vocab_path: str, **kwargs):
    """`encode_items(dataset)` for IndexOptions: `t5_embeddings` bound to a checkpoint."""
    return functools.partial(t5_embeddings, checkpoint=checkpoint, vocab_path=vocab_path, **kwargs)


def t5_embeddings(dataset, checkpoint: str, vocab_path: str, batch_size: int = 64, max_length: int = 64) -> np.ndarray:
    """[num_items, emb_dim] mean-pooled encoder states of each item's text under a recjax
    checkpoint (pads excluded from the mean)."""
    if not vocab_path or not os.path.isfile(vocab_path):
        raise FileNotFoundError(f"{vocab_path}: --vocab must be the checkpoint's SentencePiece model")
    params, config = checkpoints.restore_params(checkpoints.resolve_checkpoint_dir(checkpoint))
    sp = spm.SentencePieceProcessor(model_file=vocab_path)
    docs = [d or "item" for d in item_documents(dataset)]
    model = EncoderDecoderModel(config)

    @jax.jit
    def encode(p, tokens):  # tokens [b, max_length] -> [b, emb_dim]
        states = model.encode(p, tokens)  # [b, n, emb_dim]
        mask = (tokens > 0).astype(jnp.float32)[..., None]
        return (states * mask).sum(1) / jnp.maximum(mask.sum(1), 1.0)

    out = np.zeros((len(docs), config.emb_dim), np.float32)
    for start in range(0, len(docs), batch_size):
        chunk = docs[start:start + batch_size]
        tokens = np.zeros((batch_size, max_length), np.int32)
        for i, ids in enumerate(sp.encode(chunk)):
            ids = model_inputs.trim(ids + [EOS_ID], max_length)
            tokens[i, :len(ids)] = ids
        out[start:start + len(chunk)] = np.asarray(encode(params, tokens))[:len(chunk)]
    return out


