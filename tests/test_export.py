"""`recjax export`: recjax checkpoint -> HF directory that transformers loads, and bf16 params."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from recjax import checkpoints, conversion, hf_mapping, param_tree  # noqa: E402
from recjax.cli import export  # noqa: E402
from recjax.config import T5Config  # noqa: E402

import t5_test_models as fixtures  # noqa: E402


@pytest.fixture(scope="module")
def hf_model():
    return fixtures.random_hf_model(seed=1)


@pytest.fixture(scope="module")
def t5x_tiny_checkpoint(shared_data, tmp_path_factory):
    src = shared_data / "t5x_tiny" / "test_t5_tiny.checkpoint_0"
    if not src.exists():
        pytest.skip(f"T5X tiny checkpoint not found at {src}")
    dst = str(tmp_path_factory.mktemp("t5x") / "ckpt")
    conversion.convert("t5x", str(src), dst)
    return dst


def _run(argv, capsys):
    capsys.readouterr()  # drop what earlier steps printed (HF progress bars)
    rc = export.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line(err, *fragments):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize("layout, shard", [("safetensors", None), ("sharded", "20KB"), ("bin", None)])
def test_hf_to_recjax_to_hf_keeps_every_tensor_exactly(layout, shard, hf_model, tmp_path, capsys):
    src = fixtures.save_hf(hf_model, str(tmp_path / "src"), layout)
    if layout == "bin":
        fixtures.hub_style_config(src)  # the Hub's FLAN-T5 config.json form
    ckpt, out = str(tmp_path / "ckpt"), tmp_path / "hf_out"
    conversion.convert("hf", src, ckpt)
    argv = ["--checkpoint", ckpt, "--out", out, "--format", "hf"] + (["--max_shard_size", shard] if shard else [])
    rc, stdout, err = _run(argv, capsys)
    assert rc == 0, err
    files = set(os.listdir(out))
    assert {"config.json", "generation_config.json"} <= files
    if shard:
        assert "model.safetensors.index.json" in files and len([f for f in files if f.startswith("model-0")]) > 1
    else:
        assert "model.safetensors" in files

    reloaded = transformers.T5ForConditionalGeneration.from_pretrained(str(out)).eval()
    original = hf_model.state_dict()
    exported = reloaded.state_dict()
    assert set(exported) == set(original)
    for name, tensor in original.items():
        assert exported[name].dtype == tensor.dtype and torch.equal(exported[name], tensor), name
    assert reloaded.lm_head.weight.data_ptr() != reloaded.shared.weight.data_ptr()
    assert reloaded.config.scale_decoder_outputs is False

    tokens = torch.tensor([[5, 9, 33, 2, 1]])
    decoder_tokens = torch.tensor([[0, 7, 8]])
    with torch.no_grad():
        want = hf_model(input_ids=tokens, decoder_input_ids=decoder_tokens).logits
        got = reloaded(input_ids=tokens, decoder_input_ids=decoder_tokens).logits
    assert torch.equal(got, want)

    with open(out / "config.json") as f:
        config = hf_mapping.t5config_from_hf(json.load(f), source="config.json")
    assert config == checkpoints.restore_params(ckpt)[1]


def test_t5x_tiny_exports_with_tokenizer_and_matches_recjax(t5x_tiny_checkpoint, t5_vocab_path, tmp_path, capsys):
    out = tmp_path / "flan_like"
    rc, stdout, err = _run(["--checkpoint", t5x_tiny_checkpoint, "--out", out, "--vocab", t5_vocab_path], capsys)
    assert rc == 0, err
    assert {"spiece.model", "tokenizer_config.json", "special_tokens_map.json", "model.safetensors",
            "config.json", "generation_config.json"} == set(os.listdir(out))

    for tokenizer_class in (transformers.T5Tokenizer, transformers.T5TokenizerFast, transformers.AutoTokenizer):
        tokenizer = tokenizer_class.from_pretrained(str(out))
        assert tokenizer("Hello world").input_ids == [8774, 296, 1]
        assert tokenizer.convert_tokens_to_ids("<extra_id_0>") == 32099
        assert (tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 1)

    model = transformers.T5ForConditionalGeneration.from_pretrained(str(out)).eval()
    batch = tokenizer(["Hello world", "translate English to German: That is good."], return_tensors="pt",
                      padding=True)
    decoder_tokens = torch.tensor([[0, 37, 8774], [0, 644, 5]])
    with torch.no_grad():
        hf_logits = model(**batch, decoder_input_ids=decoder_tokens).logits.numpy()
    assert hf_logits.shape == (2, 3, 32128) and np.isfinite(hf_logits).all()

    network = pytest.importorskip("recjax.network")
    import jax
    params, config = checkpoints.restore_params(t5x_tiny_checkpoint)
    apply = jax.jit(lambda p, e, d: network.Transformer(config).apply({"params": p}, e, d, enable_dropout=False))
    logits = apply(params, batch["input_ids"].numpy().astype(np.int32), decoder_tokens.numpy().astype(np.int32))
    np.testing.assert_allclose(np.asarray(logits), hf_logits, atol=1e-4, rtol=0)


def test_params_bf16(t5x_tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "bf16"
    rc, stdout, err = _run(["--checkpoint", t5x_tiny_checkpoint, "--out", out, "--format", "params_bf16"], capsys)
    assert rc == 0, err
    params32, config32 = checkpoints.restore_params(t5x_tiny_checkpoint)
    params16, config16 = checkpoints.restore_params(str(out))
    assert config16 == config32.replace(param_dtype="bfloat16")
    flat32, flat16 = param_tree.flatten_params(params32), param_tree.flatten_params(params16)
    assert set(flat16) == set(flat32)
    for key, value in flat32.items():
        assert flat16[key].dtype == np.dtype("bfloat16"), key
        np.testing.assert_array_equal(flat16[key].astype(np.float32),
                                      value.astype(flat16[key].dtype).astype(np.float32), err_msg=key)


def _dir_bytes(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def test_bad_input_gives_one_line_and_no_output(t5x_tiny_checkpoint, hf_model, tmp_path, capsys):
    out = tmp_path / "out"
    missing = tmp_path / "nowhere"
    rc, _, err = _run(["--checkpoint", missing, "--out", out], capsys)
    assert rc == 2
    _one_line(err, f"{missing}: no such checkpoint directory")

    rc, _, err = _run(["--checkpoint", t5x_tiny_checkpoint, "--out", out, "--format", "onnx"], capsys)
    assert rc == 2
    _one_line(err, "--format 'onnx': unknown format; expected one of hf, params_bf16")

    not_sp = tmp_path / "vocab.model"
    not_sp.write_bytes(b"not a sentencepiece model")
    rc, _, err = _run(["--checkpoint", t5x_tiny_checkpoint, "--out", out, "--vocab", not_sp], capsys)
    assert rc == 2
    _one_line(err, f"{not_sp}: not a SentencePiece model")

    rc, _, err = _run(["--checkpoint", t5x_tiny_checkpoint, "--out", out, "--vocab", tmp_path / "gone.model"], capsys)
    assert rc == 2
    _one_line(err, "gone.model: no such SentencePiece model (--vocab)")
    assert not out.exists() and [n for n in os.listdir(tmp_path) if ".tmp-" in n] == []

    out.mkdir()
    rc, _, err = _run(["--checkpoint", t5x_tiny_checkpoint, "--out", out], capsys)
    assert rc == 2
    _one_line(err, f"{out}: already exists (pass --overwrite to replace it)")
    rc, _, err = _run(["--checkpoint", t5x_tiny_checkpoint, "--out", out, "--overwrite"], capsys)
    assert rc == 0, err
    assert os.path.exists(out / "model.safetensors")


def test_vocab_larger_than_model_is_refused(hf_model, t5_vocab_path, tmp_path, capsys):
    src = fixtures.save_hf(hf_model, str(tmp_path / "src"), "safetensors")
    ckpt = str(tmp_path / "ckpt")
    conversion.convert("hf", src, ckpt)
    rc, _, err = _run(["--checkpoint", ckpt, "--out", tmp_path / "out", "--vocab", t5_vocab_path], capsys)
    assert rc == 2
    _one_line(err, "32000 pieces + 100 sentinels = 32100 ids, more than the model's vocab_size 72")
    assert not (tmp_path / "out").exists()


def test_tied_logits_model_is_not_exported_to_hf(tmp_path, capsys):
    config = T5Config(vocab_size=40, emb_dim=8, num_heads=2, head_dim=4, num_encoder_layers=1,
                      num_decoder_layers=1, mlp_dim=16, logits_via_embedding=True)
    rng = np.random.default_rng(0)
    params = param_tree.unflatten_params({k: rng.normal(size=s).astype(np.float32)
                                           for k, s in param_tree.expected_param_shapes(config).items()})
    ckpt = str(tmp_path / "tied")
    checkpoints.save_params(ckpt, params, config)
    rc, _, err = _run(["--checkpoint", ckpt, "--out", tmp_path / "out"], capsys)
    assert rc == 2
    _one_line(err, "logits_via_embedding=True (tied, rescaled logits) is not supported")
    assert not (tmp_path / "out").exists() and [n for n in os.listdir(tmp_path) if ".tmp-" in n] == []


def test_export_needs_neither_torch_nor_transformers(t5x_tiny_checkpoint, tmp_path):
    out = tmp_path / "no_torch"
    code = ("import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
            "from recjax.cli import export\n"
            f"sys.exit(export.main(['--checkpoint', {t5x_tiny_checkpoint!r}, '--out', {str(out)!r}]))\n")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert os.path.exists(out / "model.safetensors") and _dir_bytes(out) > 32128 * 8 * 4 * 2


def test_export_and_score_take_a_train_model_dir(t5x_tiny_checkpoint, t5_vocab_path, tmp_path, capsys):
    """Like eval and infer, export and score accept a train run's MODEL_DIR (checkpoint in
    MODEL_DIR/checkpoints): same files, same scores as from the checkpoint directory itself."""
    import shutil

    from recjax.cli import score

    model_dir = tmp_path / "run"
    shutil.copytree(t5x_tiny_checkpoint, model_dir / "checkpoints")
    outs = {}
    for name, path in (("ckpt", t5x_tiny_checkpoint), ("model_dir", model_dir)):
        rc, stdout, err = _run(["--checkpoint", path, "--out", tmp_path / f"hf_{name}"], capsys)
        assert rc == 0, err
        assert stdout.startswith("wrote ")  # the result on stdout
        src = tmp_path / "pairs.jsonl"
        src.write_text(json.dumps({"inputs": "a user history", "targets": "item 5"}) + "\n")
        rc = score.main(["--checkpoint", str(path), "--vocab", str(t5_vocab_path), "--input", str(src),
                         "--output", str(tmp_path / f"scores_{name}.jsonl"), "--no_progress"])
        out, err = capsys.readouterr()
        assert rc == 0, err
        assert out.startswith("wrote ") and "1 scored" in out
        outs[name] = (sorted(os.listdir(tmp_path / f"hf_{name}")), (tmp_path / f"scores_{name}.jsonl").read_text())
    assert outs["ckpt"] == outs["model_dir"]
