"""recjax: FLAN-T5 fine-tuned into a recommender, in JAX."""

__version__ = "0.1.0"
