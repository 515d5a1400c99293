"""The sequence text format shared by P5 and S3-Rec: one user per line, `user item item ...`."""
from __future__ import annotations

import numpy as np

from recjax.data.errors import at, preview
from recjax.data.textio import iter_lines


def read_sequence_file(path: str, known_items: dict[int, int], items_source: str) -> tuple[list[str], list[np.ndarray]]:
    """-> (user ids as written, per-user int32 catalog indices). `known_items`: file item id -> catalog index.

    Errors name the line: a token that is not an integer, a line without items, a repeated user id,
    an item id that `items_source` does not know.
    """
    users: list[str] = []
    sequences: list[np.ndarray] = []
    line_of_user: dict[str, int] = {}
    for lineno, line in iter_lines(path):
        tokens = line.split()
        if len(tokens) < 2:
            raise at(path, lineno, f"expected 'user_id item_id [item_id ...]' (at least one item), got {preview(line)}")
        try:
            ids = [int(t) for t in tokens]
        except ValueError:
            bad = next(t for t in tokens if not t.lstrip("-").isdigit())
            raise at(path, lineno, f"expected integer ids separated by spaces, got {preview(bad)}") from None
        user = tokens[0]
        if user in line_of_user:
            raise at(path, lineno, f"user {user} already has a sequence on line {line_of_user[user]} (expected one line per user)")
        line_of_user[user] = lineno
        try:
            seq = np.fromiter((known_items[i] for i in ids[1:]), np.int32, len(ids) - 1)
        except KeyError as e:
            raise at(path, lineno, f"unknown item id {e.args[0]} (not in {items_source})") from None
        users.append(user)
        sequences.append(seq)
    return users, sequences
