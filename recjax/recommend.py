"""Recommendations for user histories given as JSONL (what `recjax infer` runs): each line is
parsed into a request (`parse_line`: one-line reasons for lines that cannot be answered),
rendered with the dataset's own retrieval template, and answered by constrained beam search over
the catalog, the history excluded unless asked; the output file appears complete or not at all.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

from recjax.data import jsonl
from recjax.data.jsonl import LineError

MAX_HISTORY_ITEMS = 1000  # per input line (see parse_line)


@dataclasses.dataclass
class Request:
    line: int
    user: Any
    items: list[int]  # item indices, oldest first
    titles: Optional[list[str]]


def parse_line(line_number: int, text: str, catalog) -> Request:
    """One JSONL line -> Request; raises jsonl.LineError (a ValueError) with the reason (no line
    number) and the line's "user" when it could be read."""
    obj = jsonl.parse_object(text, 'a "history" list')
    user = obj.get("user")
    history = obj.get("history")
    if history is None:
        raise LineError('missing "history" (a list of item IDs, oldest first)', user)
    if not isinstance(history, list):
        raise LineError(f'"history" must be a list of item IDs, got {type(history).__name__}', user)
    if not history:
        raise LineError('empty "history": at least one item ID is needed', user)
    if len(history) > MAX_HISTORY_ITEMS:
        # Every item is validated and excluded from the recommendations (the model sees only the
        # last max_history): a bound keeps one line from taking the memory of the whole run.
        raise LineError(f'"history" holds {len(history):,} items; one line may hold at most {MAX_HISTORY_ITEMS:,}',
                        user)
    items = []
    for value in history:
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise LineError(f'"history" holds {value!r}, not an item ID (a string)', user)
        index = catalog.index_of_any(str(value))
        if index < 0:
            forms = f"IDs such as {catalog.item_ids[0]!r}"
            if catalog.item_original_ids:
                forms += f" or original IDs such as {catalog.item_original_ids[0]!r}"
            raise LineError(f"unknown item ID {str(value)!r} (not one of the {len(catalog.item_ids):,} items of "
                            f"dataset {catalog.name!r}: {forms})", user)
        items.append(index)
    titles = obj.get("titles")
    if titles is not None:
        if not isinstance(titles, list) or len(titles) != len(history) or \
                not all(isinstance(t, str) for t in titles):
            raise LineError(f'"titles" must be a list of {len(history)} strings, one per history item', user)
    return Request(line_number, user, items, titles)


def render_inputs(request: Request, builder, template_index: int) -> str:
    """The model input of a request: the dataset's own retrieval rendering (`ExampleBuilder`)."""
    return builder.retrieval_inputs(request.items, template_index, request.titles)


def recommend(model, params, catalog, requests: list[Request], *, builder, template_index: int = 0,
              top_k: int = 10, beam_size: int = 20, exclude_history: bool = True, batch_size: int = 32,
              inputs_length: Optional[int] = 512, partitioner=None, progress: bool = True) -> list[list[dict]]:
    """Recommendations (rank, item_id, title, score) for each request, best first."""
    import jax

    from recjax import progress as progress_bars
    from recjax.decoding import DecodeOptions, ItemDecoder, exclusion_matrix
    from recjax.partitioning import Partitioner
    from recjax.model_inputs import decode_batches, encode, num_batches

    place = partitioner if partitioner is not None else Partitioner.create()
    place.check_batch(batch_size, "--batch_size")
    params = place.place_params(params)
    options = DecodeOptions(beam_size=max(beam_size, top_k), top_k=top_k, exclude_history=exclude_history)
    decoder = ItemDecoder(model, catalog.trie, options)
    trie_arrays = place.replicate(catalog.trie.arrays_numpy())
    examples = [{"inputs": encode(catalog.tokenizer, render_inputs(r, builder, template_index))} for r in requests]
    width = max(8, -(-max(len(set(r.items)) for r in requests) // 8) * 8)
    out: list[list[dict]] = [[] for _ in requests]
    with jax.set_mesh(place.mesh):
        for rows, padded, enc in progress_bars.bar(decode_batches(examples, batch_size, inputs_length), total=num_batches(len(requests), batch_size),
                                      desc="infer", unit="batch", disable=not progress, leave=False):
            exclude = exclusion_matrix([requests[r].items for r in padded], width) if exclude_history else None
            result = place.fetch(decoder.search(params, place.shard_batch(enc), trie_arrays,
                                                None if exclude is None else place.shard_batch(exclude)))
            for i, r in enumerate(rows):
                recs = []
                for k in range(top_k):
                    item = int(result.items[i, k])
                    if item < 0:  # the catalog ran out (fewer items than top_k left)
                        continue
                    rec = {"rank": len(recs) + 1, "item_id": catalog.item_ids[item]}
                    if catalog.item_original_ids:
                        rec["original_id"] = catalog.item_original_ids[item]
                    rec.update(title=catalog.item_titles[item], score=round(float(result.log_probs[i, k]), 5))
                    recs.append(rec)
                out[r] = recs
    return out


def run_infer(model, params, catalog, input_path: str, output_path: str, **kwargs) -> tuple[int, int]:
    """Reads input_path, writes output_path atomically; returns (answered, errors)."""
    requests, records = [], {}
    for number, text, error in jsonl.read_lines(input_path):
        if error is not None:
            records[number] = jsonl.error_record(number, error)
            continue
        try:
            requests.append(parse_line(number, text, catalog))
        except LineError as e:
            records[number] = jsonl.error_record(number, e)
    if requests:
        for request, recs in zip(requests, recommend(model, params, catalog, requests, **kwargs)):
            records[request.line] = {"line": request.line, "user": request.user, "recommendations": recs}
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    jsonl.write_jsonl(output_path, (records[number] for number in sorted(records)))
    errors = sum("error" in r for r in records.values())
    return len(records) - errors, errors
