"""Readers of raw recommendation files; each returns a `recjax.data.raw.RawDataset`."""
