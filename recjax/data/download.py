"""Fetch the official raw files, only when the user asks (`recjax prepare --download`)."""
from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request

from recjax.data.errors import DataError

SNAP_AMAZON_2014 = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles"
GROUPLENS = "https://files.grouplens.org/datasets/movielens"
MOVIELENS_ARCHIVES = {"100k": "ml-100k.zip", "1m": "ml-1m.zip"}


def official_urls(source_format: str, category: str | None, movielens_variant: str) -> dict[str, str]:
    """file name -> URL of the official files of a format."""
    if source_format == "amazon2014":
        if not category:
            raise DataError("--download of amazon2014 needs --category (e.g. Beauty, Sports_and_Outdoors, Toys_and_Games)")
        return {f"reviews_{category}_5.json.gz": f"{SNAP_AMAZON_2014}/reviews_{category}_5.json.gz",
                f"meta_{category}.json.gz": f"{SNAP_AMAZON_2014}/meta_{category}.json.gz"}
    if source_format == "movielens":
        archive = MOVIELENS_ARCHIVES[movielens_variant]
        return {archive: f"{GROUPLENS}/{archive}"}
    raise DataError(f"--download: no official download for --format {source_format} (give its files with --src)")


def fetch(urls: dict[str, str], dest_dir: str, timeout_s: float = 60.0) -> None:
    """Download every missing file into dest_dir (each to a temporary name, then renamed)."""
    os.makedirs(dest_dir, exist_ok=True)
    for name, url in urls.items():
        path = os.path.join(dest_dir, name)
        if os.path.exists(path):
            continue
        print(f"downloading {url} -> {path}")
        fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=f".{name}.")
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response, os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(response, out)
            os.replace(tmp, path)
        except OSError as e:
            raise DataError(f"{url}: download failed ({e}); put the file at {path} yourself") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
