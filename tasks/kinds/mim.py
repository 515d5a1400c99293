"""Masked item modeling (auxiliary): BERT4Rec's cloze in words."""
from __future__ import annotations

import numpy as np

from tasks import templates
from tasks.kinds.base import TaskKind, per_user

TEMPLATES = templates.define(
    "mim", "{masked_ids}",
    "Some items of this purchase history, oldest first, are hidden as [MASK]: "
    "{masked_history}. Write the IDs of the hidden items in order.",
    "Fill in the masked items of a user's purchase sequence: {masked_history}. Answer with "
    "the IDs of the masked items ({num_masked} in all), in order.",
    "In the following purchase history [MASK] marks a missing item: {masked_history}. Which "
    "items are missing? Write their IDs.",
)


@per_user
def build(builder, split, user, rng):
    seq = builder.cloze_sequence(split, user)
    template = builder.choose_template(KIND, rng)
    if split == "train":
        mask = rng.random(len(seq)) < builder.options.mim_mask_prob  # [len]
        if not mask.any():
            mask[rng.integers(len(seq))] = True
        if mask.all() and len(seq) > 1:
            mask[rng.integers(len(seq))] = False  # keep some context
    else:
        mask = np.zeros(len(seq), dtype=bool)
        mask[-1] = True  # BERT4Rec's evaluation: predict the held-out last item
    masked = seq[mask]
    if builder.codes_form:  # marker, then the history with each masked item's codes replaced by a mask
        shown = [templates.CODE_MASK if m else builder.item_ids[i] for i, m in zip(seq, mask)]
        inputs, targets = " ".join([templates.CODE_MARKERS[KIND.name]] + shown), builder.ids(masked)
    else:
        shown = [templates.MASK_TOKEN if m else builder.item_texts[i] for i, m in zip(seq, mask)]
        inputs, targets = template.render(
            masked_history=templates.history_text(shown), num_masked=int(mask.sum()),
            masked_ids=templates.ID_SEPARATOR.join(builder.item_ids[i] for i in masked))
    return [builder.row(KIND, template, user, inputs, targets, builder.ids(masked), seq[~mask])]


KIND = TaskKind(
    name="mim", stream=3, templates=TEMPLATES, build=build, count="users", auxiliary=True,
    template_split="train",
    description="Masked item modeling (BERT4Rec's cloze in words): each history item is masked with "
                "probability `mim_mask_prob` (0.2, at least one); write the masked items' IDs in "
                "order. Validation/test mask the held-out item, appended last.")
