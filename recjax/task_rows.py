"""The evaluation rows of a task: every example of a split in order, as the SeqIO task gives it,
built with the registration alone (no TensorFlow, no Gin configurables: `recjax eval` imports it
after its config is locked)."""
from __future__ import annotations

from typing import Iterator

import numpy as np


def task_rows(task_name: str, split: str) -> Iterator[dict]:
    """Every example of a task's split in order (no shuffle; the registration's seed), as the
    SeqIO task gives it without trimming: `inputs` / `targets` int32 ids with EOS, their
    `*_pretokenized` text and the metadata features (`task`, `template`, `user`, `target_id`,
    `history_ids`, `candidate_ids`). What the evaluator reads; no TensorFlow."""
    import tasks
    from recjax.config import EOS_ID
    from tasks.examples import META_STRING_FEATURES, token_pairs

    registered = tasks.dataset_of(task_name)
    kind = tasks.kind_of(task_name)
    for chunk in registered.builder.token_chunks(kind.name, split, 0, registered.seed, False):
        for i, pair in enumerate(token_pairs(chunk)):
            row = {key: str(chunk[key][i]) for key in META_STRING_FEATURES}
            row["user"] = np.int32(chunk["user"][i])
            for key in ("inputs", "targets"):
                row[key] = np.append(pair[key], EOS_ID).astype(np.int32)
                row[key + "_pretokenized"] = str(chunk[key + "_pretokenized"][i])
            yield row
