"""Data ingestion: raw recommendation files -> prepared datasets (see recjax/data/README.md)."""
from recjax.data.prepared import PreparedDataset, load_prepared

__all__ = ["PreparedDataset", "load_prepared"]
