"""`recjax score`: log-likelihoods of a converted random HF T5 equal HF's, with the real T5 vocabulary."""
import json
import os

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from recjax import conversion, scoring  # noqa: E402
from recjax.cli import score  # noqa: E402

import t5_test_models as fixtures  # noqa: E402

# Every model vocabulary id the T5 SentencePiece model (32000 pieces + 100 sentinels) can emit.
HF_SCORING = dict(fixtures.HF_TINY, vocab_size=32128)

PAIRS = [
    {"inputs": "Which item will the user buy next? History: 1021 lipstick matte red, 77 nail polish",
     "targets": "5121"},
    {"inputs": "Rank the candidates for the user.", "targets": "Item 8832 hydrating face cream, then 12"},
    {"inputs": "translate English to German: That is good.", "targets": "Das ist gut."},
    {"inputs": "Does the user prefer item 31 or item 9942? The user bought: shampoo, conditioner, "
               "hair spray, styling gel, comb, brush, dryer, curling iron, hair clips, hair ties",
     "targets": "item 9942"},
    {"inputs": "short", "targets": ""},  # an empty target still has EOS: log p(EOS | inputs)
    {"inputs": "Unicode: café naïve", "targets": "crème brûlée"},
]


def _random_hf_model(seed: int = 0):
    """A random T5ForConditionalGeneration (every tensor random, RMSNorm scales too; lm_head untied)."""
    torch.manual_seed(seed)
    model = transformers.T5ForConditionalGeneration(transformers.T5Config(**HF_SCORING))
    model.lm_head.weight = torch.nn.Parameter(torch.empty_like(model.lm_head.weight))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("layer_norm.weight"):
                param.uniform_(0.5, 1.5)
            elif name == "lm_head.weight":
                # Logits of a few units: sums of ~10 log-probs near -10 each stay where float32
                # rounding is far below the 1e-4 compared (std 0.5 gives logits near 50).
                param.normal_(0.0, 0.1)
            else:
                param.normal_(0.0, 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def hf_model():
    return _random_hf_model()


@pytest.fixture(scope="module")
def checkpoint(hf_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("score")
    hf_dir = fixtures.save_hf(hf_model, str(root / "hf"), "safetensors")
    dst = str(root / "ckpt")
    conversion.convert("hf", hf_dir, dst)
    return dst


@pytest.fixture(scope="module")
def sp(t5_vocab_path):
    import sentencepiece as spm
    return spm.SentencePieceProcessor(model_file=str(t5_vocab_path))


def hf_log_likelihood(model, input_ids, target_ids) -> float:
    """Sum over target tokens of log softmax(logits)[label]; labels = target ids incl. EOS."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([input_ids]), labels=torch.tensor([target_ids])).logits[0]
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    return float(log_probs[torch.arange(len(target_ids)), torch.tensor(target_ids)].sum())


def _write_jsonl(path, lines):
    with open(path, "wb") as f:
        for line in lines:
            if not isinstance(line, bytes):
                line = (line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)).encode()
            f.write(line + b"\n")
    return str(path)


def _read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _run(argv, capsys):
    capsys.readouterr()
    rc = score.main([str(a) for a in argv])
    return rc, *capsys.readouterr()


@pytest.fixture(scope="module")
def scored(checkpoint, t5_vocab_path, tmp_path_factory):
    """The six pairs plus malformed lines, scored once through the binary (batch 4: several batches)."""
    root = tmp_path_factory.mktemp("scored")
    lines = [PAIRS[0], PAIRS[1], "{not json", PAIRS[2], {"inputs": "no target"}, "", PAIRS[3],
             {"inputs": 3, "targets": "x"}, "[1, 2]", PAIRS[4],
             b'{"inputs": "caf\xe9", "targets": "x"}', PAIRS[5]]  # line 11: Latin-1, not UTF-8
    src = _write_jsonl(root / "in.jsonl", lines)
    out = str(root / "out.jsonl")
    rc = score.main(["--checkpoint", checkpoint, "--vocab", str(t5_vocab_path), "--input", src,
                     "--output", out, "--batch_size", "4", "--no_progress"])
    assert rc == 0
    return _read_jsonl(out), root


def test_log_likelihoods_match_hf(scored, hf_model, sp):
    records, _ = scored
    good = [r for r in records if "error" not in r]
    assert [(r["inputs"], r["targets"]) for r in good] == [(p["inputs"], p["targets"]) for p in PAIRS]
    for record in good:
        input_ids = sp.encode(record["inputs"]) + [1]  # SeqIO: add_eos=True
        target_ids = sp.encode(record["targets"]) + [1]
        assert record["num_target_tokens"] == len(target_ids)
        expected = hf_log_likelihood(hf_model, input_ids, target_ids)
        assert expected < -1.0  # a random model: far from certain, so a wrong token would show
        assert record["log_likelihood"] == pytest.approx(expected, abs=1e-4), record


def test_malformed_lines_get_error_records_in_place(scored):
    records, _ = scored
    errors = {r["line"]: r["error"] for r in records if "error" in r}
    assert set(errors) == {3, 5, 8, 9, 11}  # line 6 is blank: skipped, but counted
    assert errors[3] == "not valid JSON (Expecting property name enclosed in double quotes at column 2)"
    assert errors[11] == "not UTF-8 text (byte 0xe9 at column 16)"
    assert "missing key 'targets'" in errors[5]
    assert "'inputs' must be a string" in errors[8]
    assert "expected a JSON object" in errors[9]
    # Output order follows the input: scores and errors interleaved as the lines were.
    kinds = ["error" if "error" in r else r["targets"] for r in records]
    assert kinds == ["5121", PAIRS[1]["targets"], "error", "Das ist gut.", "error", "item 9942", "error", "error",
                     "", "error", "crème brûlée"]


def test_output_written_whole(scored):
    _, root = scored
    assert sorted(os.listdir(root)) == ["in.jsonl", "out.jsonl"]  # no temporary left behind


def test_buckets_bound_compiled_shapes(t5_vocab_path):
    """Many lengths, few shapes: lengths bucket to powers of two and batches are padded whole
    (that padding leaves the scores alone is what test_log_likelihoods_match_hf shows)."""
    from tasks.vocab import load_vocabulary

    vocabulary = load_vocabulary(str(t5_vocab_path))
    lines = [json.dumps({"inputs": "word " * n, "targets": "a b"}) for n in range(1, 40)]
    examples, errors = scoring.read_lines(lines, vocabulary)
    assert not errors
    assert len({len(e.input_ids) for e in examples}) == 39  # 39 input lengths ...
    batches = list(scoring.make_batches(examples, 8))
    shapes = {f["encoder_input_tokens"].shape + f["decoder_target_tokens"].shape[1:] for _, f in batches}
    assert shapes == {(8, 8, 8), (8, 16, 8), (8, 32, 8), (8, 64, 8)}  # ... 4 compiled shapes
    assert sorted(e.line for chunk, _ in batches for e in chunk) == list(range(1, 40))


def test_length_limits(checkpoint, t5_vocab_path, hf_model, sp, tmp_path, capsys):
    src = _write_jsonl(tmp_path / "in.jsonl", [PAIRS[3], PAIRS[1]])
    out = tmp_path / "out.jsonl"
    rc, _, err = _run(["--checkpoint", checkpoint, "--vocab", t5_vocab_path, "--input", src, "--output", out,
                       "--max_inputs_length", 10, "--max_targets_length", 8, "--no_progress"], capsys)
    assert rc == 0, err
    trimmed, too_long = _read_jsonl(out)
    assert trimmed["inputs_truncated"] is True
    input_ids = sp.encode(PAIRS[3]["inputs"])[:9] + [1]  # SeqIO's append_eos_after_trim
    target_ids = sp.encode(PAIRS[3]["targets"]) + [1]
    assert trimmed["log_likelihood"] == pytest.approx(hf_log_likelihood(hf_model, input_ids, target_ids), abs=1e-4)
    assert too_long["line"] == 2 and "more than --max_targets_length 8" in too_long["error"]


@pytest.mark.parametrize("what", ["vocab", "checkpoint", "input"])
def test_missing_files_are_one_line_errors(what, checkpoint, t5_vocab_path, tmp_path, capsys):
    src = _write_jsonl(tmp_path / "in.jsonl", [PAIRS[0]])
    paths = {"vocab": str(t5_vocab_path), "checkpoint": checkpoint, "input": src}
    paths[what] = str(tmp_path / f"missing_{what}")
    out = tmp_path / "out.jsonl"
    rc, _, err = _run(["--checkpoint", paths["checkpoint"], "--vocab", paths["vocab"], "--input", paths["input"],
                       "--output", out, "--no_progress"], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"missing_{what}" in lines[0], err
    assert not out.exists()
