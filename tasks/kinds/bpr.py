"""BPR (auxiliary): Bayesian personalized ranking in words, the true next item vs one sampled item."""
from __future__ import annotations

from tasks import templates
from tasks.kinds.base import TaskKind, per_user

TEMPLATES = templates.define(
    "bpr", "{target}",
    "Purchase history of a user, oldest first: {history}. Which of these two items does the "
    "user prefer to buy next: {item_a} or {item_b}? Answer with the item ID.",
    "A customer bought the following items in this order: {history}. Would the customer "
    "rather buy {item_a} or {item_b} next? Write the ID of the preferred item.",
    "Given the purchase sequence {history}, which item does this user prefer, {item_a} or "
    "{item_b}? Write its ID.",
)


@per_user
def build(builder, split, user, rng):
    rows = []
    pool = builder.negative_pool(user)
    for history, target in builder.next_item_cases(split, user):
        template = builder.choose_template(KIND, rng)
        negative = int(pool[rng.integers(len(pool))])
        pair = (target, negative) if rng.integers(2) == 0 else (negative, target)
        target_id = builder.item_ids[target]
        if builder.codes_form:  # marker, history, separator, the two items: codes only
            inputs, targets = builder.codes_inputs(KIND.name, history, pair), target_id
        else:
            inputs, targets = template.render(history=builder.history_text(history), item_a=builder.item_texts[pair[0]],
                                              item_b=builder.item_texts[pair[1]], target=target_id)
        rows.append(builder.row(KIND, template, user, inputs, targets, target_id, history, pair))
    return rows


KIND = TaskKind(
    name="bpr", stream=5, templates=TEMPLATES, build=build, count="prefixes", auxiliary=True,
    description="Bayesian personalized ranking in words: the true next item and one sampled item the "
                "user never interacted with, in random order; write the preferred (true) item's ID.")
