"""Retrieval: write the next item's ID (evaluated over all items)."""
from __future__ import annotations

import numpy as np

from tasks import metric_fns, templates
from tasks.kinds.base import TaskKind, per_user

TEMPLATES = templates.define(
    "retrieval", "{target}",
    "Purchase history of a user, oldest first: {history}. Which item will the user buy next? "
    "Answer with the item ID.",
    "A customer bought the following items in this order: {history}. Predict the ID of the "
    "next item the customer will buy.",
    "Items a user interacted with, from oldest to newest: {history}. Recommend the next item "
    "for this user and write its ID.",
    "Given the purchase sequence {history}, what is the ID of the item this user is most "
    "likely to buy next?",
)


def render_inputs(builder, items, template: templates.Template, titles=None, user: int | None = None) -> str:
    """The retrieval input for a history of item indices (oldest first) with `template`; `titles`
    (one per item) replace the catalog's texts; `user` (the codes form with user tokens) puts its
    token first. Training, evaluation and `recjax infer` all render through here, so serving
    cannot drift from training."""
    items = np.asarray(items, np.int64)
    if builder.codes_form:  # TIGER's input: the most recent items' codes, no words
        history = builder.history_codes(items)
        if builder.options.user_tokens and user is not None:
            return f"{builder.user_token(user)} {history}"
        return history
    if titles is None or not builder.options.item_text:
        history = builder.history_text(items)
    else:
        keep = len(items) - min(len(items), builder.options.max_history)
        history = templates.history_text([templates.item_text(builder.item_ids[i], t)
                                          for i, t in zip(items[keep:], list(titles)[keep:])])
    return template.render(history=history, target="")[0]


@per_user
def build(builder, split, user, rng):
    rows = []
    for history, target in builder.next_item_cases(split, user):
        template = builder.choose_template(KIND, rng)
        target_id = builder.item_ids[target]
        rows.append(builder.row(KIND, template, user, render_inputs(builder, history, template, user=user),
                                template.targets.format(target=target_id), target_id, history))
    return rows


KIND = TaskKind(
    name="retrieval", stream=0, templates=TEMPLATES, build=build, count="prefixes",
    description="Write the next item's ID (scored over all items). Train: every prefix of the "
                "training sequence; validation/test: leave-one-out.",
    evaluation="retrieval", postprocess_fn=metric_fns.recommendation_postprocess,
    metric_fns=lambda valid_ids: [metric_fns.retrieval_metric_fn(valid_ids)])
