"""What a task kind is: one `TaskKind` entry holds everything recjax knows about a kind.

A kind (retrieval, ranking, ...) is defined once, in its own module of `tasks.kinds`: its
phrasings, how its examples are built from a user's data, how many there are per epoch, how the
evaluator scores it and the SeqIO metric fns of its task. Everything else (the example builder's
epochs and streams, the SeqIO registry, `recjax eval`, `inspect`, `TEMPLATES.md`) reads the entry.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Optional

import numpy as np

from tasks.templates import Template

COUNTS = ("prefixes", "users", "rating_records")
EVALUATIONS = ("retrieval", "ranking", "rating")

# (builder, split, a chunk of users with each one's random stream) -> that chunk's example rows.
# The builder is a tasks.examples.ExampleBuilder (not imported: it calls the kinds).
BuildFn = Callable[[Any, str, Sequence[tuple[int, np.random.Generator]]], list[dict]]


@dataclasses.dataclass(frozen=True)
class TaskKind:
    """One task kind.

    name: the task's suffix (`NAME_<kind>`) and its `task` feature.
    stream: the id of the kind's random streams `(seed, epoch, split, stream, user)`; fixed once
      released (a new number changes every sample of the kind).
    templates: its phrasings (`tasks.templates.define`); changing one bumps TEMPLATES_VERSION.
    build: the rows of a chunk of users (with each user's stream) of one split; a kind that needs
      the whole chunk at once (MLM tokenizes it in one call) gets it that way.
    count: examples per user and epoch: "prefixes" (train: one per prefix of the training
      sequence; validation/test: one per user), "users" (one per user in every split),
      "rating_records" (one per rating record of the split).
    auxiliary: trains the model but is not a recommendation task (mixtures `NAME_rec_<kind>`;
      the evaluator skips it).
    evaluation: how `recjax eval` scores it ("retrieval": constrained search over all items,
      "ranking": log-likelihood of each candidate, "rating": expected rating), None for none.
    postprocess_fn / metric_fns: the SeqIO task's (`metric_fns(valid item IDs)`).
    tokenized: rows carry token ids (`inputs`, `targets` int32 arrays and their `*_pretokenized`
      text) instead of text the source tokenizes.
    needs_ratings: only for datasets with ratings.
    description: one paragraph for TEMPLATES.md.
    """

    name: str
    stream: int
    templates: tuple[Template, ...]
    build: BuildFn
    count: str
    description: str
    auxiliary: bool = False
    evaluation: Optional[str] = None
    postprocess_fn: Optional[Callable[..., Any]] = None
    metric_fns: Callable[[Sequence[str]], list] = lambda valid_ids: []
    tokenized: bool = False
    needs_ratings: bool = False
    template_split: str = "validation"  # the split TEMPLATES.md shows an example of

    def __post_init__(self):
        if self.count not in COUNTS:
            raise ValueError(f"TaskKind {self.name!r}: count must be one of {COUNTS}, got {self.count!r}")
        if self.evaluation not in EVALUATIONS + (None,):
            raise ValueError(f"TaskKind {self.name!r}: evaluation must be one of {EVALUATIONS} or None, "
                             f"got {self.evaluation!r}")
        if not self.templates or any(t.task != self.name for t in self.templates):
            raise ValueError(f"TaskKind {self.name!r}: needs templates defined for {self.name!r}")


def per_user(fn: Callable[[Any, str, int, np.random.Generator], list[dict]]) -> BuildFn:
    """A `build` from a function of one user (most kinds)."""

    def build(builder, split, users):
        rows: list[dict] = []
        for user, rng in users:
            rows.extend(fn(builder, split, user, rng))
        return rows

    build.__name__ = fn.__name__
    build.__doc__ = fn.__doc__
    return build
