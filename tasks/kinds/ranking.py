"""Ranking: choose the next item among 1 positive + `num_negatives` never-touched items."""
from __future__ import annotations

import numpy as np

from tasks import metric_fns, templates
from tasks.kinds.base import TaskKind, per_user

TEMPLATES = templates.define(
    "ranking", "{target}",
    "Purchase history of a user, oldest first: {history}. Candidate items: {candidates}. "
    "Which candidate will the user buy next? Answer with the item ID.",
    "A customer bought the following items in this order: {history}. Choose the item the "
    "customer will buy next from these candidates: {candidates}. Write its ID.",
    "Rank these candidate items for a user and write the ID of the best one: {candidates}. "
    "The user's purchase history, oldest first: {history}.",
)


@per_user
def build(builder, split, user, rng):
    rows = []
    pool = builder.negative_pool(user)
    k = builder.options.num_negatives
    for history, target in builder.next_item_cases(split, user):
        template = builder.choose_template(KIND, rng)
        negatives = rng.choice(pool, size=k, replace=False)
        at = int(rng.integers(k + 1))
        candidates = np.concatenate([negatives[:at], [target], negatives[at:]])  # [k + 1]
        if builder.options.ranking_candidate_text:
            shown = templates.HISTORY_SEPARATOR.join(builder.item_texts[i] for i in candidates)
        else:
            shown = templates.ID_SEPARATOR.join(builder.id_array[candidates].tolist())
        target_id = builder.item_ids[target]
        if builder.codes_form:  # marker, history, separator, candidates: codes only
            inputs = builder.codes_inputs(KIND.name, history, candidates, builder.options.ranking_max_history)
            targets = target_id
        else:
            inputs, targets = template.render(
                history=builder.history_text(history, builder.options.ranking_max_history), candidates=shown,
                target=target_id)
        rows.append(builder.row(KIND, template, user, inputs, targets, target_id, history, candidates))
    return rows


KIND = TaskKind(
    name="ranking", stream=1, templates=TEMPLATES, build=build, count="prefixes",
    description="1 positive + `num_negatives` (99) items the user never interacted with, shuffled "
                "(seeded per user); write the chosen item's ID. Candidates are IDs only (100 IDs "
                "with text would not fit 512 tokens) and the history shows the `ranking_max_history` "
                "(8) most recent items.",
    evaluation="ranking", postprocess_fn=metric_fns.recommendation_postprocess,
    metric_fns=lambda valid_ids: [metric_fns.ranking_metric_fn])
