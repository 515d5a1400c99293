"""Item-identifier schemes (random, sequential, collaborative, semantic RQ-KMeans / RQ-VAE) and
`reindex`, which writes a prepared dataset whose items carry a scheme's IDs. See schemes.py."""
from recjax.data.indexing.schemes import (  # noqa: F401
    NUMERIC_SCHEMES, SCHEMES, STRUCTURED_SCHEMES, IndexOptions, ItemIndex, build_index, code_pieces, code_text,
    numeric_ids, parse_code_text)
from recjax.data.indexing.apply import reindex, with_index  # noqa: F401
