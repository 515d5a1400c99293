"""recjax: FLAN-T5 fine-tuned into a recommender, in JAX."""

from recjax import xla_defaults as _xla_defaults

__version__ = "0.1.0"

# Before any JAX backend starts (JAX reads XLA_FLAGS then): see recjax/xla_defaults.py.
_xla_defaults.apply()
