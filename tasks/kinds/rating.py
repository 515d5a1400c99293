"""Rating: write the 1-5 star rating of an item (datasets with ratings only)."""
from __future__ import annotations

from tasks import metric_fns, templates
from tasks.kinds.base import TaskKind, per_user

TEMPLATES = templates.define(
    "rating", "{rating}",
    "Purchase history of a user, oldest first: {history}. How many stars, from 1 to 5, will "
    "the user give to {item}?",
    "A customer who bought {history} has now bought {item}. Predict the customer's star "
    "rating of it, from 1 to 5.",
    "Given that a user bought {history}, what rating from 1 to 5 would the user give {item}?",
)


@per_user
def build(builder, split, user, rng):
    rows = []
    seq = builder.full[user]
    position = {int(item): p for p, item in enumerate(seq)}
    for item, rating in builder.rating_records(split)[user]:
        template = builder.choose_template(KIND, rng)
        history = seq[:min(position[item], len(seq) - 2)]  # training items before it
        inputs, targets = template.render(history=builder.history_text(history), item=builder.item_texts[item],
                                          rating=templates.rating_text(rating))
        rows.append(builder.row(KIND, template, user, inputs, targets, builder.item_ids[item], history))
    return rows


KIND = TaskKind(
    name="rating", stream=2, templates=TEMPLATES, build=build, count="rating_records",
    description="Write the 1-5 star rating (only datasets with ratings; P5's 80/10/10 split, minus "
                "the user's leave-one-out items in train).",
    evaluation="rating", postprocess_fn=metric_fns.rating_postprocess,
    metric_fns=lambda valid_ids: [metric_fns.rating_metric_fn], needs_ratings=True)
