"""Log-likelihood of given targets under a recjax checkpoint (the library behind `recjax score`).

Tokenization is SeqIO's for the recjax tasks: SentencePiece ids of `inputs` and `targets`, each
followed by EOS (`add_eos=True`); a too-long input is trimmed and then given its EOS, as
`seqio.preprocessors.append_eos_after_trim` does. A target is never trimmed: the likelihood of a
cut target is not the likelihood of the target, so a target longer than the limit is an error
for that line.

Examples are grouped by (input bucket, target bucket) (`recjax.model_inputs.bucket_length`), and every
batch is padded to the full batch size, so jit compiles one program per bucket pair that occurs
(a handful), whatever the number of lines.
"""
from __future__ import annotations

import dataclasses
import os
import functools
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np

from recjax import model_inputs
from recjax.data import jsonl

MIN_BUCKET = 8


class ScoreInputError(ValueError):
    """One line of the input cannot be scored; str(e) says why (the line number is kept apart)."""


@dataclasses.dataclass
class Example:
    line: int  # 1-based line number in the input file
    inputs: str
    targets: str
    input_ids: list[int]  # with EOS
    target_ids: list[int]  # with EOS
    inputs_truncated: bool = False


def parse_line(text: str) -> tuple[str, str]:
    """One JSONL line -> (inputs, targets), or ScoreInputError."""
    try:
        record = jsonl.parse_object(text, "string fields 'inputs' and 'targets'")
    except jsonl.LineError as e:
        raise ScoreInputError(str(e)) from None
    for key in ("inputs", "targets"):
        if key not in record:
            raise ScoreInputError(f"missing key {key!r} (expected string fields 'inputs' and 'targets')")
        if not isinstance(record[key], str):
            raise ScoreInputError(f"{key!r} must be a string, got {type(record[key]).__name__}")
    return record["inputs"], record["targets"]


def tokenize(vocabulary, inputs: str, targets: str, *, line: int, max_inputs_length: Optional[int] = None,
             max_targets_length: Optional[int] = None) -> Example:
    """SeqIO's token ids (EOS appended) of one example; trims inputs, refuses over-long targets."""
    full_inputs = model_inputs.encode(vocabulary.tokenizer, inputs)
    input_ids = model_inputs.trim(full_inputs, max_inputs_length).tolist()
    target_ids = model_inputs.encode(vocabulary.tokenizer, targets).tolist()
    truncated = len(input_ids) < len(full_inputs)
    if max_targets_length is not None and len(target_ids) > max_targets_length:
        raise ScoreInputError(f"targets are {len(target_ids)} tokens with EOS, more than --max_targets_length "
                              f"{max_targets_length} (a cut target would get a wrong likelihood)")
    return Example(line, inputs, targets, input_ids, target_ids, truncated)


def make_batches(examples: Sequence[Example], batch_size: int, *, max_inputs_length: Optional[int] = None,
                 max_targets_length: Optional[int] = None) -> Iterator[tuple[list[Example], dict[str, np.ndarray]]]:
    """Groups examples by bucket pair; yields (examples, features) with every batch `batch_size` rows.

    Features are those of SeqIO's EncDecFeatureConverter (unpacked): encoder_input_tokens
    [batch, in_bucket], decoder_target_tokens and decoder_input_tokens (targets shifted right, T5
    starts with the pad id 0) [batch, target_bucket]. Padding rows are all zeros.
    """
    groups: dict[tuple[int, int], list[Example]] = {}
    for ex in examples:
        key = (model_inputs.bucket_length(len(ex.input_ids), MIN_BUCKET, max_inputs_length),
               model_inputs.bucket_length(len(ex.target_ids), MIN_BUCKET, max_targets_length))
        groups.setdefault(key, []).append(ex)
    for (in_len, tgt_len), members in sorted(groups.items()):
        for start in range(0, len(members), batch_size):
            chunk = members[start:start + batch_size]
            encoder = np.zeros((batch_size, in_len), np.int32)  # [batch, in_len]
            targets = np.zeros((batch_size, tgt_len), np.int32)  # [batch, tgt_len]
            for row, ex in enumerate(chunk):
                encoder[row, :len(ex.input_ids)] = ex.input_ids
                targets[row, :len(ex.target_ids)] = ex.target_ids
            decoder_inputs = model_inputs.shift_right(targets)
            yield chunk, {"encoder_input_tokens": encoder, "decoder_input_tokens": decoder_inputs,
                          "decoder_target_tokens": targets}


@functools.lru_cache(maxsize=None)
def _compiled_score_batch(model):
    """One jitted `score_batch` per model (equal models share it)."""
    import jax

    return jax.jit(model.score_batch)


class Scorer:
    """A model's params on the mesh and a jit-compiled `score_batch`; batch rows split over the
    partitioner's data axis (default: all devices), so a batch's rows must divide by it
    (`Partitioner.round_batch`)."""

    def __init__(self, model, params: Mapping[str, Any], partitioner=None):
        from recjax.partitioning import Partitioner

        self.model, self.config = model, model.config
        self.partitioner = partitioner if partitioner is not None else Partitioner.create()
        self.params = self.partitioner.place_params(params)
        self._score = _compiled_score_batch(model)
        self.compiled_shapes: set[tuple[int, ...]] = set()  # (batch, in_len, tgt_len) seen

    def score(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """Summed log p(target tokens) of each row [batch] (float32; padding contributes 0)."""
        import jax

        self.compiled_shapes.add(features["encoder_input_tokens"].shape + features["decoder_target_tokens"].shape[1:])
        place = self.partitioner
        with jax.set_mesh(place.mesh):
            return place.fetch(self._score(self.params, {k: place.shard_batch(v) for k, v in features.items()}))


def read_lines(lines: Iterable[str], vocabulary, *, max_inputs_length: Optional[int] = None,
               max_targets_length: Optional[int] = None) -> tuple[list[Example], dict[int, str]]:
    """JSONL lines -> tokenized examples and {line number: error} for the lines that cannot be scored.

    Blank lines are skipped (they are not records); line numbers count them.
    """
    numbered = ((number, text, None) for number, text in enumerate(lines, start=1) if text.strip())
    return read_numbered(numbered, vocabulary, max_inputs_length=max_inputs_length,
                         max_targets_length=max_targets_length)


def read_numbered(numbered: Iterable[tuple[int, Optional[str], Optional[str]]], vocabulary, *,
                  max_inputs_length: Optional[int] = None,
                  max_targets_length: Optional[int] = None) -> tuple[list[Example], dict[int, str]]:
    """`recjax.data.jsonl.read_lines` tuples (line number, text, or the line's error) -> examples
    and {line number: error}."""
    examples, errors = [], {}
    for number, text, error in numbered:
        if error is not None:
            errors[number] = error
            continue
        try:
            inputs, targets = parse_line(text)
            examples.append(tokenize(vocabulary, inputs, targets, line=number, max_inputs_length=max_inputs_length,
                                     max_targets_length=max_targets_length))
        except ScoreInputError as e:
            errors[number] = str(e)
    return examples, errors


def score_examples(scorer: Scorer, examples: Sequence[Example], batch_size: int, *,
                   max_inputs_length: Optional[int] = None, max_targets_length: Optional[int] = None,
                   progress: bool = True) -> dict[int, dict[str, Any]]:
    """{line number: output record} for tokenized examples."""
    from recjax import progress as progress_bars

    out: dict[int, dict[str, Any]] = {}
    with progress_bars.bar(total=len(examples), desc="score", unit="ex", disable=not progress) as bar:
        for chunk, features in make_batches(examples, batch_size, max_inputs_length=max_inputs_length,
                                            max_targets_length=max_targets_length):
            scores = scorer.score(features)
            for ex, value in zip(chunk, scores):
                record = {"inputs": ex.inputs, "targets": ex.targets, "log_likelihood": float(value),
                          "num_target_tokens": len(ex.target_ids)}
                if ex.inputs_truncated:
                    record["inputs_truncated"] = True
                out[ex.line] = record
            bar.update(len(chunk))
    return out


def output_records(results: Mapping[int, dict[str, Any]], errors: Mapping[int, str]) -> list[dict[str, Any]]:
    """One record per non-blank input line, in input order: a score or `{"line": N, "error": ...}`."""
    records = []
    for line in sorted(set(results) | set(errors)):
        records.append(results[line] if line in results else jsonl.error_record(line, errors[line]))
    return records


def score_file(checkpoint: str, vocab: str, input_path: str, output_path: str, *, batch_size: int = 32,
               max_inputs_length: Optional[int] = None, max_targets_length: Optional[int] = None,
               step: Optional[int] = None, dtype: Optional[str] = None, progress: bool = True) -> dict[str, int]:
    """Scores every line of `input_path` into `output_path`; returns {"scored": n, "errors": m}.

    Raises ValueError / FileNotFoundError (one line, naming the file) for a missing or invalid
    input, vocabulary or checkpoint; per-line problems become error records instead.
    """
    from recjax.checkpoints import Checkpoint
    from recjax.partitioning import Partitioner
    from recjax.restore import restore_model
    from tasks import load_vocabulary

    if batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {batch_size}")
    for name, value in (("--max_inputs_length", max_inputs_length), ("--max_targets_length", max_targets_length)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not os.path.isfile(input_path):
        raise FileNotFoundError(f"{input_path}: input JSONL not found")
    vocabulary = load_vocabulary(vocab)
    partitioner = Partitioner.create()
    with Checkpoint(checkpoint) as ckpt:
        model, params, _ = restore_model(ckpt, partitioner, step, dtype=dtype)
    config = model.config
    if vocabulary.vocab_size > config.vocab_size:
        raise ValueError(f"{vocab}: {vocabulary.vocab_size} ids (with sentinels) do not fit the model's "
                         f"vocab_size {config.vocab_size} ({checkpoint})")
    examples, errors = read_numbered(jsonl.read_lines(input_path), vocabulary,
                                             max_inputs_length=max_inputs_length,
                                             max_targets_length=max_targets_length)
    scorer = Scorer(model, params, partitioner)
    results = score_examples(scorer, examples, partitioner.round_batch(batch_size), max_inputs_length=max_inputs_length,
                                     max_targets_length=max_targets_length, progress=progress)
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    jsonl.write_jsonl(output_path, output_records(results, errors))
    return {"scored": len(results), "errors": len(errors)}
