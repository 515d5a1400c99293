"""Masked language modeling (auxiliary): T5 span corruption of the history text."""
from __future__ import annotations

import numpy as np

from tasks import span_corruption, templates
from tasks.kinds.base import TaskKind

# The instruction is followed by the span-corrupted history text (tokens, T5 sentinels); the
# target is T5's sentinel/span sequence, so `targets` is not a format pattern here.
TEMPLATES = templates.define(
    "mlm", "<sentinel spans>",
    "Fill in the missing spans of this purchase history: ",
    "Restore the corrupted parts of the items a user bought: ",
    "Reconstruct the masked spans of a user's purchase sequence: ",
)


def build(builder, split, users):
    """One row per user; the chunk's history texts are tokenized in one call (not per user), and
    each user's span corruption continues that user's stream after the template choice."""
    if builder.tokenizer is None or builder.sentinel_ids is None:
        raise ValueError("the MLM task needs a tokenizer with sentinels (register with a vocabulary)")
    options = builder.options
    limit = min(options.mlm_max_tokens, span_corruption.max_corruptible_length(
        len(builder.sentinel_ids), options.mlm_noise_density, options.mlm_mean_noise_span_length))
    chosen, texts = [], []
    for user, rng in users:
        seq = builder.cloze_sequence(split, user)
        chosen.append((user, rng, seq, builder.choose_template(KIND, rng)))
        texts.append(builder.history_codes(seq) if builder.codes_form else
                     templates.history_text([builder.item_texts[i] for i in seq]))
    if not chosen:
        return []
    # The instruction (codes form: the kind's marker) precedes the corrupted history, uncorrupted.
    heads = [templates.CODE_MARKERS[KIND.name] if builder.codes_form else t.inputs.strip() for t in TEMPLATES]
    prefixes = {t.index: p for t, p in zip(TEMPLATES, builder.tokenizer.encode(heads))}
    rows, corrupted_all, targets_all = [], [], []
    for (user, rng, seq, template), tokens in zip(chosen, builder.tokenizer.encode(texts)):
        tokens = np.asarray(tokens[-limit:], dtype=np.int32)  # keep the most recent text
        corrupted, targets = span_corruption.span_corrupt(tokens, rng, builder.sentinel_ids,
                                                          options.mlm_noise_density, options.mlm_mean_noise_span_length)
        row = builder.row(KIND, template, user, np.concatenate([prefixes[template.index], corrupted]).astype(np.int32),
                          targets, "", seq)
        rows.append(row)
        corrupted_all.append(corrupted.tolist())
        targets_all.append(targets.tolist())
    for row, template, corrupted, targets in zip(rows, (c[3] for c in chosen), builder.tokenizer.decode(corrupted_all),
                                                 builder.tokenizer.decode(targets_all)):
        head = templates.CODE_MARKERS[KIND.name] + " " if builder.codes_form else template.inputs
        row["inputs_pretokenized"] = head + corrupted
        row["targets_pretokenized"] = targets
    return rows


KIND = TaskKind(
    name="mlm", stream=4, templates=TEMPLATES, build=build, count="users", auxiliary=True, tokenized=True,
    template_split="train",
    description="T5 span corruption (noise density 0.15, mean span 3) over the token ids of the "
                "history text (its most recent `mlm_max_tokens`, 128); the instruction is not "
                "corrupted; the target is T5's `<extra_id_k> span ...` sequence.")
