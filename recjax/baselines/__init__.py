"""Conventional sequential recommenders on the same prepared splits as the LLM: popularity,
SASRec (Kang & McAuley, ICDM 2018) and BERT4Rec (Sun et al., CIKM 2019), trained with Flax/optax
and evaluated with `recjax.metrics` by full ranking over all items (history items excluded).

Models work on lists of int item-index arrays (internal indices 0..num_items-1), not on a loader:
`recjax.baselines.run` (what `recjax baseline` runs) connects them to `recjax.data.load_prepared`.
"""
