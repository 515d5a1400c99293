"""Item embeddings that semantic identifiers quantize: one float32 row per item.

Sources (`EMBEDDING_SOURCES`):
- `text`: TF-IDF (or BM25) of each item's title/keyword text and attributes, reduced with a
  truncated SVD (LSA) and L2-normalized. Needs nothing but the prepared dataset.
- `collaborative`: the item co-occurrence graph of the TRAINING sequences (seq[:-2]; items within
  `window` positions of each other co-occur), weighted by positive PMI and factorized with a
  truncated SVD (the implicit matrix factorization of word2vec, Levy & Goldberg 2014).
- `t5`: mean-pooled encoder states of each item's text under a recjax checkpoint (e.g. a
  converted FLAN-T5; TIGER uses a sentence-T5 encoder the same way).
- `file`: a user's own [num_items, dim] `.npy` matrix, rows in the dataset's item order.

None of them reads a user's validation or test item (leave-one-out), so no identifier built on
them can leak the held-out items.
"""
from __future__ import annotations

import os

from collections.abc import Callable

import numpy as np

EMBEDDING_SOURCES = ("text", "collaborative", "t5", "file")


def item_documents(dataset) -> list[str]:
    """Title/keyword text plus attributes of every item (what the `text` source embeds)."""
    docs = []
    for title, attributes in zip(dataset.item_titles, dataset.item_attributes):
        docs.append(" ".join([title or ""] + [str(a) for a in (attributes or [])]).strip())
    return docs


def _svd(matrix, dim: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import TruncatedSVD

    dim = max(1, min(dim, min(matrix.shape) - 1))
    rows = TruncatedSVD(n_components=dim, algorithm="randomized", n_iter=7, random_state=seed).fit_transform(matrix)
    return _normalize(rows.astype(np.float32))


def _normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def text_embeddings(dataset, dim: int = 128, weighting: str = "tfidf", seed: int = 0) -> np.ndarray:
    """[num_items, dim] LSA embeddings of the item text (TF-IDF or BM25 weights)."""
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

    docs = item_documents(dataset)
    if not any(d for d in docs):
        raise ValueError(f"dataset {dataset.name!r} has no item text; use --embeddings collaborative or file")
    if weighting == "tfidf":
        matrix = TfidfVectorizer(sublinear_tf=True, token_pattern=r"(?u)\b\w+\b").fit_transform(docs)
    elif weighting == "bm25":
        counts = CountVectorizer(token_pattern=r"(?u)\b\w+\b").fit_transform(docs).tocsr().astype(np.float64)
        k1, b = 1.2, 0.75
        doc_len = np.asarray(counts.sum(axis=1)).ravel()
        df = np.bincount(counts.indices, minlength=counts.shape[1])
        idf = np.log1p((counts.shape[0] - df + 0.5) / (df + 0.5))
        scale = k1 * (1 - b + b * doc_len / max(doc_len.mean(), 1e-9))  # per document
        tf = counts.data
        row_of = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
        counts.data = idf[counts.indices] * tf * (k1 + 1) / (tf + scale[row_of])
        matrix = counts
    else:
        raise ValueError(f"--text_weighting {weighting!r}: expected tfidf or bm25")
    return _svd(matrix, dim, seed)


def cooccurrence(train_sequences, num_items: int, window: int = 3):
    """Symmetric [num_items, num_items] sparse counts of items within `window` positions of each
    other in the same training sequence."""
    import scipy.sparse as sp

    rows, cols = [], []
    for seq in train_sequences:
        seq = np.asarray(seq, np.int64)
        for d in range(1, window + 1):
            if len(seq) > d:
                rows.append(seq[:-d])
                cols.append(seq[d:])
    if not rows:
        return sp.csr_matrix((num_items, num_items), dtype=np.float64)
    r, c = np.concatenate(rows), np.concatenate(cols)
    m = sp.coo_matrix((np.ones(len(r)), (r, c)), shape=(num_items, num_items)).tocsr()
    return m + m.T


def collaborative_embeddings(dataset, dim: int = 64, window: int = 3, seed: int = 0) -> np.ndarray:
    """[num_items, dim] PPMI-SVD embeddings of the training co-occurrence graph. Items that never
    co-occur with anything in training get a zero row (they cluster together)."""
    counts = cooccurrence(dataset.train_sequences(), dataset.num_items, window).tocoo()
    total = counts.sum()
    if total == 0:
        raise ValueError(f"dataset {dataset.name!r}: no two items co-occur in the training sequences")
    row_sum = np.asarray(counts.sum(axis=1)).ravel()
    pmi = np.log(counts.data * total / (row_sum[counts.row] * row_sum[counts.col]))
    keep = pmi > 0
    import scipy.sparse as sp

    ppmi = sp.csr_matrix((pmi[keep], (counts.row[keep], counts.col[keep])), shape=counts.shape)
    return _svd(ppmi, dim, seed)


def load_embedding_file(path: str, num_items: int) -> np.ndarray:
    if not path or not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: --embeddings_file not found (a [num_items, dim] .npy matrix)")
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ValueError(f"{path}: not a .npy matrix ({str(e).splitlines()[0]})") from None
    if x.ndim != 2 or x.shape[0] != num_items:
        raise ValueError(f"{path}: shape {x.shape}, expected [{num_items}, dim] (one row per item of the dataset)")
    if not np.isfinite(x).all():
        raise ValueError(f"{path}: holds non-finite values")
    return x.astype(np.float32)


def item_embeddings(dataset, source: str, *, dim: int = 128, seed: int = 0, text_weighting: str = "tfidf",
                    window: int = 3, path: str | None = None, checkpoint: str | None = None,
                    encode_items: Callable | None = None) -> np.ndarray:
    """Embeddings of every item of `dataset` from `source` (one of EMBEDDING_SOURCES). "t5" calls
    `encode_items(dataset)`: the model layer's encoder (`recjax.encoder_embeddings`, which
    `recjax index` passes in; this foundation layer does not import the network)."""
    if source == "text":
        return text_embeddings(dataset, dim, text_weighting, seed)
    if source == "collaborative":
        return collaborative_embeddings(dataset, dim, window, seed)
    if source == "t5":
        if not checkpoint:
            raise ValueError("--embeddings t5 needs --checkpoint (a recjax checkpoint, e.g. from `recjax convert`)")
        if encode_items is None:
            raise ValueError("--embeddings t5: no encoder given (IndexOptions.encode_items, e.g. "
                             "recjax.encoder_embeddings.t5_encoder(checkpoint, vocab_path); `recjax index` sets it)")
        return _normalize(np.asarray(encode_items(dataset), np.float32))
    if source == "file":
        return load_embedding_file(path, dataset.num_items)
    raise ValueError(f"--embeddings {source!r}: expected one of {', '.join(EMBEDDING_SOURCES)}")
