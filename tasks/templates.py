"""Natural-language templates of the recommendation and auxiliary tasks (versioned).

Rules (Cao et al. 2024's "more informative" samples): no user IDs; an item is its ID together
with its text (`5046 (nail lacquer simmer and shimmer)`); the history is the raw time-ordered
sequence, oldest first, truncated from the oldest end. Targets are what the model writes: an item
ID, a list of item IDs (MIM), a rating, or T5 sentinel spans (MLM).

Several phrasings per task (each kind's module in tasks/kinds/ holds its own); which one an example gets is drawn from that example's seeded random
stream (see tasks/examples.py). Any change to a phrasing, a placeholder or the item rendering
must bump TEMPLATES_VERSION: the version is part of every example's `template` feature and of
tasks/TEMPLATES.md.
"""
from __future__ import annotations

import dataclasses

TEMPLATES_VERSION = 1

MASK_TOKEN = "[MASK]"  # T5's vocabulary has no "<": "<mask>" would tokenize to <unk>
HISTORY_SEPARATOR = "; "
ID_SEPARATOR = ", "
EMPTY_HISTORY = "nothing yet"

# The codes form (TaskOptions.input_form = 'codes'): inputs of item codes and T5 sentinels only, no
# words, so a code-only vocabulary (tasks.code_vocabulary) reads every token. Retrieval's input is
# the history's codes alone (TIGER's); every other kind's starts with its own marker, and a
# separator (or, for MIM, a mask) splits its parts. Phrasings do not apply (no words).
CODE_MARKERS = {"ranking": "<extra_id_99>", "mim": "<extra_id_98>", "mlm": "<extra_id_97>", "bpr": "<extra_id_96>"}
CODE_SEPARATOR = "<extra_id_95>"
CODE_MASK = "<extra_id_94>"  # MIM's masked item (MLM's spans use <extra_id_0>, <extra_id_1>, ...)


@dataclasses.dataclass(frozen=True)
class Template:
    task: str
    index: int
    inputs: str  # str.format pattern over the task's placeholders
    targets: str

    @property
    def id(self) -> str:
        return f"{self.task}/{self.index}@v{TEMPLATES_VERSION}"

    def render(self, **fields) -> tuple[str, str]:
        return self.inputs.format(**fields), self.targets.format(**fields)


# Placeholders: {history} items "ID (text)" joined by "; "; {target} an item ID; {candidates} item
# IDs joined by ", " (or with text, see TaskOptions.ranking_candidate_text); {item}, {item_a},
# {item_b} items "ID (text)"; {rating} "1".."5"; {masked_history} the history with [MASK] in
# place of the masked items; {num_masked}; {masked_ids} IDs joined by ", ". Each kind's phrasings
# live in its module (tasks/kinds/*.py), defined with `define`.
def define(task: str, targets: str, *inputs: str) -> tuple[Template, ...]:
    """The phrasings of one task kind: Template `index` i is inputs[i]."""
    return tuple(Template(task, i, text, targets) for i, text in enumerate(inputs))


def item_text(item_id: str, title: str) -> str:
    """An item as the model reads it: its ID together with its text."""
    title = " ".join(title.split())  # one line, single spaces
    return f"{item_id} ({title})" if title else item_id


def history_text(rendered_items: list[str]) -> str:
    return HISTORY_SEPARATOR.join(rendered_items) if rendered_items else EMPTY_HISTORY


def rating_text(rating: float) -> str:
    """5.0 -> "5", 4.5 -> "4.5": what the model writes for a rating."""
    return f"{float(rating):g}"
