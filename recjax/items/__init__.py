"""Item identifiers, one home: how the model writes an item and everything that follows from it.

- `schemes`: random / sequential numbers, collaborative and semantic (RQ-KMeans, RQ-VAE) codes,
  built from the training split (`embeddings`, `quantize` make the codes);
- `reindex`: a prepared dataset re-written under a scheme (`recjax index`);
- `vocabulary`: the code vocabulary (one SentencePiece piece per level and code) and
  `vocab_size`, the model's VOCAB_SIZE for a dataset and base vocabulary;
- `record`: the IDs a checkpoint was trained with (`item_ids.json`), checked when serving;
- `catalog` and `trie`: IDs, titles and token sequences as evaluation, `infer` and the
  constrained decoders read them.

Submodules are imported by name (`from recjax.items import schemes`): this package imports
nothing itself, so the data layer can use the schemes without pulling in the rest.
"""
