"""Natural-language templates of the recommendation and auxiliary tasks (versioned).

Rules (Cao et al. 2024's "more informative" samples): no user IDs; an item is its ID together
with its text (`5046 (nail lacquer simmer and shimmer)`); the history is the raw time-ordered
sequence, oldest first, truncated from the oldest end. Targets are what the model writes: an item
ID, a list of item IDs (MIM), a rating, or T5 sentinel spans (MLM).

Several phrasings per task; which one an example gets is drawn from that example's seeded random
stream (see tasks/examples.py). Any change to a phrasing, a placeholder or the item rendering
must bump TEMPLATES_VERSION: the version is part of every example's `template` feature and of
tasks/TEMPLATES.md.
"""
from __future__ import annotations

import dataclasses
import re

TEMPLATES_VERSION = 1

MASK_TOKEN = "[MASK]"  # T5's vocabulary has no "<": "<mask>" would tokenize to <unk>
HISTORY_SEPARATOR = "; "
ID_SEPARATOR = ", "
EMPTY_HISTORY = "nothing yet"


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


def _templates(task: str, targets: str, *inputs: str) -> tuple[Template, ...]:
    return tuple(Template(task, i, text, targets) for i, text in enumerate(inputs))


# Placeholders: {history} items "ID (text)" joined by "; "; {target} an item ID; {candidates} item
# IDs joined by ", " (or with text, see TaskOptions.ranking_candidate_text); {item}, {item_a},
# {item_b} items "ID (text)"; {rating} "1".."5"; {masked_history} the history with [MASK] in
# place of the masked items; {num_masked}; {masked_ids} IDs joined by ", ".
TEMPLATES: dict[str, tuple[Template, ...]] = {
    "retrieval": _templates(
        "retrieval", "{target}",
        "Purchase history of a user, oldest first: {history}. Which item will the user buy next? "
        "Answer with the item ID.",
        "A customer bought the following items in this order: {history}. Predict the ID of the "
        "next item the customer will buy.",
        "Items a user interacted with, from oldest to newest: {history}. Recommend the next item "
        "for this user and write its ID.",
        "Given the purchase sequence {history}, what is the ID of the item this user is most "
        "likely to buy next?",
    ),
    "ranking": _templates(
        "ranking", "{target}",
        "Purchase history of a user, oldest first: {history}. Candidate items: {candidates}. "
        "Which candidate will the user buy next? Answer with the item ID.",
        "A customer bought the following items in this order: {history}. Choose the item the "
        "customer will buy next from these candidates: {candidates}. Write its ID.",
        "Rank these candidate items for a user and write the ID of the best one: {candidates}. "
        "The user's purchase history, oldest first: {history}.",
    ),
    "rating": _templates(
        "rating", "{rating}",
        "Purchase history of a user, oldest first: {history}. How many stars, from 1 to 5, will "
        "the user give to {item}?",
        "A customer who bought {history} has now bought {item}. Predict the customer's star "
        "rating of it, from 1 to 5.",
        "Given that a user bought {history}, what rating from 1 to 5 would the user give {item}?",
    ),
    "mim": _templates(
        "mim", "{masked_ids}",
        "Some items of this purchase history, oldest first, are hidden as [MASK]: "
        "{masked_history}. Write the IDs of the hidden items in order.",
        "Fill in the masked items of a user's purchase sequence: {masked_history}. Answer with "
        "the IDs of the masked items ({num_masked} in all), in order.",
        "In the following purchase history [MASK] marks a missing item: {masked_history}. Which "
        "items are missing? Write their IDs.",
    ),
    # MLM: the instruction is followed by the span-corrupted history text (tokens, T5 sentinels);
    # the target is T5's sentinel/span sequence, so `targets` is not a format pattern here.
    "mlm": _templates(
        "mlm", "<sentinel spans>",
        "Fill in the missing spans of this purchase history: ",
        "Restore the corrupted parts of the items a user bought: ",
        "Reconstruct the masked spans of a user's purchase sequence: ",
    ),
    "bpr": _templates(
        "bpr", "{target}",
        "Purchase history of a user, oldest first: {history}. Which of these two items does the "
        "user prefer to buy next: {item_a} or {item_b}? Answer with the item ID.",
        "A customer bought the following items in this order: {history}. Would the customer "
        "rather buy {item_a} or {item_b} next? Write the ID of the preferred item.",
        "Given the purchase sequence {history}, which item does this user prefer, {item_a} or "
        "{item_b}? Write its ID.",
    ),
}


def item_text(item_id: str, title: str) -> str:
    """An item as the model reads it: its ID together with its text."""
    title = " ".join(title.split())  # one line, single spaces
    return f"{item_id} ({title})" if title else item_id


def history_text(rendered_items: list[str]) -> str:
    return HISTORY_SEPARATOR.join(rendered_items) if rendered_items else EMPTY_HISTORY


def rating_text(rating: float) -> str:
    """5.0 -> "5", 4.5 -> "4.5": what the model writes for a rating."""
    return f"{float(rating):g}"


def all_template_text() -> list[str]:
    """Every phrasing with its placeholders removed (for training a dataset's own vocabulary)."""
    out = []
    for templates in TEMPLATES.values():
        for t in templates:
            out.append(re.sub(r"\{[a-z_]+\}", " ", t.inputs))
    out.append(MASK_TOKEN)
    return out
