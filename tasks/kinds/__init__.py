"""The task kinds, one module each, and their registry.

    from tasks import kinds
    kinds.get("ranking").evaluation       # "ranking"
    [k.name for k in kinds.all_kinds()]   # retrieval, ranking, rating, mim, mlm, bpr

Adding a kind: a module here defining its templates, build function and `KIND = TaskKind(...)`
(see tasks/kinds/base.py and the README's "Add a task kind"), listed in `_BUILT_IN` below, or
`register(kind)` from your own code before `tasks.register_dataset`.
"""
from __future__ import annotations

import re

from tasks.kinds import bpr, mim, mlm, ranking, rating, retrieval
from tasks.kinds.base import COUNTS, EVALUATIONS, TaskKind, per_user
from tasks.templates import MASK_TOKEN

_BUILT_IN = (retrieval.KIND, ranking.KIND, rating.KIND, mim.KIND, mlm.KIND, bpr.KIND)
_KINDS: dict[str, TaskKind] = {}


def register(kind: TaskKind) -> TaskKind:
    """Adds a kind (its name and stream must be new); datasets registered afterwards get its task."""
    if kind.name in _KINDS and _KINDS[kind.name] is not kind:
        raise ValueError(f"task kind {kind.name!r} is already registered")
    taken = {k.stream: k.name for k in _KINDS.values() if k is not kind}
    if kind.stream in taken:
        raise ValueError(f"task kind {kind.name!r}: stream {kind.stream} is {taken[kind.stream]!r}'s")
    _KINDS[kind.name] = kind
    return kind


for _kind in _BUILT_IN:
    register(_kind)


def unregister(name: str) -> None:
    """Removes a kind added with `register` (the built-in kinds stay)."""
    if any(k.name == name for k in _BUILT_IN):
        raise ValueError(f"task kind {name!r} is built in")
    _KINDS.pop(name, None)


def get(name: str) -> TaskKind:
    if name not in _KINDS:
        raise ValueError(f"unknown task kind {name!r}; expected one of {tuple(_KINDS)}")
    return _KINDS[name]


def all_kinds() -> tuple[TaskKind, ...]:
    """Every registered kind, recommendation kinds first, in registration order."""
    return tuple(k for k in _KINDS.values() if not k.auxiliary) + tuple(k for k in _KINDS.values() if k.auxiliary)


def names(auxiliary: bool | None = None) -> tuple[str, ...]:
    """Kind names; auxiliary=False: the recommendation kinds, True: the auxiliary ones."""
    return tuple(k.name for k in all_kinds() if auxiliary is None or k.auxiliary == auxiliary)


def templates_by_kind() -> dict[str, tuple]:
    """{kind: its templates} (tasks.TEMPLATES)."""
    return {k.name: k.templates for k in all_kinds()}


def all_template_text() -> list[str]:
    """Every phrasing with its placeholders removed, and the mask token (for training a dataset's
    own vocabulary)."""
    out = [re.sub(r"\{[a-z_]+\}", " ", t.inputs) for kind in all_kinds() for t in kind.templates]
    return out + [MASK_TOKEN]


__all__ = ["COUNTS", "all_template_text", "EVALUATIONS", "TaskKind", "all_kinds", "get", "names", "per_user", "register",
           "templates_by_kind", "unregister"]
