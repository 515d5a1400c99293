"""`recjax convert` and the checkpoint format: HF and T5X in, orbax checkpoint out, checked."""
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from recjax import checkpoints, conversion, hf_mapping, param_tree  # noqa: E402
from recjax.cli import convert  # noqa: E402
from recjax.checkpoints import CheckpointError  # noqa: E402
from recjax.config import T5Config  # noqa: E402

import t5_test_models as fixtures  # noqa: E402


@pytest.fixture(scope="module")
def hf_model():
    return fixtures.random_hf_model(seed=0)


@pytest.fixture(scope="module")
def hf_dirs(hf_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {layout: fixtures.save_hf(hf_model, str(root / layout), layout)
            for layout in ("safetensors", "sharded", "bin", "bin_sharded")}


@pytest.fixture(scope="module")
def t5x_legacy_path(shared_data):
    path = shared_data / "t5x_tiny" / "test_t5_tiny.checkpoint_0"
    if not path.exists():
        pytest.skip(f"T5X tiny checkpoint not found at {path}")
    return str(path)


@pytest.fixture(scope="module")
def t5x_legacy(t5x_legacy_path):
    return fixtures.read_t5x_legacy(t5x_legacy_path)


def _run(module, argv, capsys):
    capsys.readouterr()  # drop what earlier steps printed (HF progress bars)
    rc = module.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _assert_one_line_error(err, *fragments):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def _no_leftovers(parent):
    return [n for n in os.listdir(parent) if ".tmp-" in n]


# ---------------------------------------------------------------------------------------------
# The mapping table against the real transformers model.
# ---------------------------------------------------------------------------------------------

def test_table_names_every_hf_tensor_and_shape(hf_model):
    config = hf_mapping.t5config_from_hf(hf_model.config.to_dict(), source="config")
    state = hf_model.state_dict()
    rows = hf_mapping.tensor_mappings(config)
    assert {r.hf_name for r in rows} == set(state) - hf_mapping.HF_REDUNDANT_TENSORS
    for row in rows:
        assert tuple(state[row.hf_name].shape) == hf_mapping.hf_shape(row, config), row


def test_expected_shapes_equal_the_network_params():
    network = pytest.importorskip("recjax.network")
    import flax.linen as nn
    import jax

    config = hf_mapping.t5config_from_hf({"model_type": "t5", **fixtures.HF_TINY}, source="config")
    abstract = jax.eval_shape(lambda: nn.unbox(network.init_params(config, jax.random.PRNGKey(0))))
    shapes = {k: tuple(v.shape) for k, v in param_tree.flatten_params(abstract).items()}
    assert shapes == param_tree.expected_param_shapes(config)


def test_config_from_hf_carries_every_field(hf_model):
    config = hf_mapping.t5config_from_hf(hf_model.config.to_dict(), source="config")
    assert config == T5Config(vocab_size=72, emb_dim=16, num_heads=3, head_dim=6, num_encoder_layers=2,
                              num_decoder_layers=3, mlp_dim=24, mlp_activations=("gelu", "linear"),
                              dropout_rate=0.1, logits_via_embedding=False, relative_attention_num_buckets=8,
                              relative_attention_max_distance=20, layer_norm_epsilon=1e-5)
    back = hf_mapping.t5config_to_hf(config)
    for key in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads",
                "relative_attention_num_buckets", "relative_attention_max_distance", "layer_norm_epsilon",
                "dropout_rate", "feed_forward_proj", "decoder_start_token_id", "pad_token_id", "eos_token_id"):
        assert back[key] == fixtures.HF_TINY[key], key
    assert back["tie_word_embeddings"] is False


@pytest.mark.parametrize("change, fragment", [
    ({"feed_forward_proj": "relu"}, "feed_forward_proj='relu' is not supported"),
    ({"tie_word_embeddings": True}, "tie_word_embeddings=true"),
    ({"scale_decoder_outputs": True}, "tie_word_embeddings=true"),
    ({"model_type": "bart"}, "model_type='bart'"),
    ({"pad_token_id": 3}, "pad_token_id=3"),
    ({"d_model": None}, "missing key 'd_model'"),
])
def test_config_from_hf_refuses_unsupported_models(change, fragment):
    d = {"model_type": "t5", **fixtures.HF_TINY, **change}
    d = {k: v for k, v in d.items() if v is not None}
    with pytest.raises(CheckpointError, match="^cfg.json: ") as e:
        hf_mapping.t5config_from_hf(d, source="cfg.json")
    assert fragment in str(e.value)


def test_config_from_transformers5_save_pretrained(hf_dirs):
    # transformers 5 writes tie_word_embeddings=true for every T5; scale_decoder_outputs=false is what counts.
    with open(os.path.join(hf_dirs["safetensors"], "config.json")) as f:
        d = json.load(f)
    assert d["tie_word_embeddings"] is True and d["scale_decoder_outputs"] is False
    assert hf_mapping.t5config_from_hf(d, source="c").logits_via_embedding is False


# ---------------------------------------------------------------------------------------------
# HF -> recjax.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["safetensors", "sharded", "bin", "bin_sharded"])
def test_convert_hf_layouts(layout, hf_model, hf_dirs, tmp_path, capsys):
    dst = tmp_path / "ckpt"
    rc, out, err = _run(convert, ["--from", "hf", "--src", hf_dirs[layout], "--dst", dst], capsys)
    assert rc == 0, err
    assert "wrote" in out and str(dst) in out
    params, config = checkpoints.restore_params(str(dst))
    assert config.num_encoder_layers == 2 and config.num_decoder_layers == 3 and config.head_dim == 6
    assert checkpoints.latest_step(str(dst)) == 0
    state = {k: v.numpy() for k, v in hf_model.state_dict().items()}
    # Spot checks written out by hand (independent of the table in hf_mapping).
    enc1, dec2 = params["encoder"]["layers_1"], params["decoder"]["layers_2"]
    np.testing.assert_array_equal(params["token_embedder"]["embedding"], state["shared.weight"])
    np.testing.assert_array_equal(enc1["attention"]["query"]["kernel"],
                                  state["encoder.block.1.layer.0.SelfAttention.q.weight"].T)
    np.testing.assert_array_equal(enc1["pre_mlp_layer_norm"]["scale"], state["encoder.block.1.layer.1.layer_norm.weight"])
    np.testing.assert_array_equal(dec2["pre_cross_attention_layer_norm"]["scale"],
                                  state["decoder.block.2.layer.1.layer_norm.weight"])
    np.testing.assert_array_equal(dec2["encoder_decoder_attention"]["out"]["kernel"],
                                  state["decoder.block.2.layer.1.EncDecAttention.o.weight"].T)
    np.testing.assert_array_equal(dec2["mlp"]["wi_1"]["kernel"], state["decoder.block.2.layer.2.DenseReluDense.wi_1.weight"].T)
    np.testing.assert_array_equal(params["decoder"]["relpos_bias"]["rel_embedding"],
                                  state["decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].T)
    np.testing.assert_array_equal(params["decoder"]["logits_dense"]["kernel"], state["lm_head.weight"].T)
    np.testing.assert_array_equal(params["decoder"]["decoder_norm"]["scale"], state["decoder.final_layer_norm.weight"])
    assert all(v.dtype == np.float32 for v in param_tree.flatten_params(params).values())


def test_hf_half_precision_weights_become_float32(hf_model, tmp_path):
    half = fixtures.random_hf_model(seed=0).to(torch.bfloat16)
    src = fixtures.save_hf(half, str(tmp_path / "bf16"), "safetensors")
    params, _ = conversion.load_hf_checkpoint(src)
    query = params["decoder"]["layers_1"]["self_attention"]["query"]["kernel"]
    assert query.dtype == np.float32
    want = half.state_dict()["decoder.block.1.layer.0.SelfAttention.q.weight"].float().numpy().T
    np.testing.assert_array_equal(query, want)


def test_hf_logits_equal_recjax_network_logits(hf_model, hf_dirs):
    """The converted checkpoint computes what transformers computes (padding included)."""
    network = pytest.importorskip("recjax.network")
    params, config = conversion.load_hf_checkpoint(hf_dirs["safetensors"])
    rng = np.random.default_rng(0)
    encoder_tokens = rng.integers(2, 72, size=(2, 9)).astype(np.int32)
    encoder_tokens[1, 6:] = 0  # padding
    decoder_tokens = np.concatenate([np.zeros((2, 1), np.int32), rng.integers(2, 72, size=(2, 6))], 1).astype(np.int32)
    with torch.no_grad():
        expected = hf_model(input_ids=torch.tensor(encoder_tokens, dtype=torch.long),
                            attention_mask=torch.tensor(encoder_tokens > 0, dtype=torch.long),
                            decoder_input_ids=torch.tensor(decoder_tokens, dtype=torch.long)).logits.numpy()
    import jax
    apply = jax.jit(lambda p, e, d: network.Transformer(config).apply({"params": p}, e, d, enable_dropout=False))
    logits = apply(params, encoder_tokens, decoder_tokens)
    # float32 on both sides, summed in other orders: logits of magnitude ~6 agree to ~1e-4 (one of
    # 1,008 was 1.0055e-4 off on an AVX-512 machine, the same before and after the code moved).
    np.testing.assert_allclose(np.asarray(logits), expected, atol=2e-4, rtol=0)


# ---------------------------------------------------------------------------------------------
# T5X -> recjax.
# ---------------------------------------------------------------------------------------------

T5X_TINY_CONFIG = T5Config(vocab_size=32128, emb_dim=8, num_heads=4, head_dim=3, num_encoder_layers=2,
                           num_decoder_layers=2, mlp_dim=16, mlp_activations=("gelu", "linear"),
                           logits_via_embedding=False, relative_attention_num_buckets=32)


def _assert_same_as_legacy(params, legacy):
    from flax import traverse_util
    want = traverse_util.flatten_dict(legacy["optimizer"]["target"], sep="/")
    got = param_tree.flatten_params(params)
    assert set(got) == set(want)
    for key in want:
        assert got[key].dtype == np.float32
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_convert_real_t5x_tiny_checkpoint(t5x_legacy_path, t5x_legacy, tmp_path, capsys):
    dst = tmp_path / "tiny"
    rc, out, err = _run(convert, ["--from", "t5x", "--src", t5x_legacy_path, "--dst", dst], capsys)
    assert rc == 0, err
    params, config = checkpoints.restore_params(str(dst))
    assert config == T5X_TINY_CONFIG
    assert params["decoder"]["logits_dense"]["kernel"].shape == (8, 32128)
    assert params["encoder"]["layers_1"]["attention"]["query"]["kernel"].shape == (8, 12)
    assert params["decoder"]["relpos_bias"]["rel_embedding"].shape == (4, 32)
    _assert_same_as_legacy(params, t5x_legacy)
    with open(dst / "model_config.json") as f:
        assert json.load(f)["mlp_activations"] == ["gelu", "linear"]


def test_t5x_tensorstore_directory_layout(t5x_legacy, tmp_path):
    model_dir = str(tmp_path / "t5x_model")
    checkpoint_dir = fixtures.write_t5x_tensorstore_checkpoint(t5x_legacy, model_dir, step=1200)
    assert os.path.isdir(os.path.join(checkpoint_dir, "target.encoder.layers_0.attention.query.kernel"))
    for path in (checkpoint_dir, model_dir):  # the checkpoint_N dir, or the model dir (newest step)
        params, config = conversion.load_t5x_checkpoint(path)
        assert config == T5X_TINY_CONFIG
        _assert_same_as_legacy(params, t5x_legacy)
    # A zarr array that is gone: the error names its path and the param.
    import shutil
    shutil.rmtree(os.path.join(checkpoint_dir, "target.decoder.logits_dense.kernel"))
    with pytest.raises(CheckpointError, match="target.decoder.logits_dense.kernel: missing TensorStore array "
                                              "for param 'decoder/logits_dense/kernel'"):
        conversion.load_t5x_checkpoint(checkpoint_dir)


def test_t5x_orbax_directory_layout(t5x_legacy, tmp_path):
    model_dir = str(tmp_path / "t5x_orbax")
    checkpoint_dir = fixtures.write_t5x_orbax_checkpoint(t5x_legacy, model_dir, step=3)
    assert os.path.isdir(os.path.join(checkpoint_dir, "state"))
    for path in (checkpoint_dir, model_dir):
        params, config = conversion.load_t5x_checkpoint(path)
        assert config == T5X_TINY_CONFIG
        _assert_same_as_legacy(params, t5x_legacy)


# ---------------------------------------------------------------------------------------------
# Bad input: one line naming the path, the key and the expected shape; nothing left behind.
# ---------------------------------------------------------------------------------------------

def _rewrite_safetensors(directory, edit):
    from safetensors.numpy import load_file, save_file
    path = os.path.join(directory, "model.safetensors")
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata={"format": "pt"})
    return path


def test_hf_missing_tensor(hf_dirs, tmp_path, capsys):
    src = fixtures.copy_tree(hf_dirs["safetensors"], str(tmp_path / "src"))
    path = _rewrite_safetensors(src, lambda t: t.pop("decoder.block.2.layer.2.DenseReluDense.wo.weight"))
    dst = tmp_path / "out" / "ckpt"
    rc, _, err = _run(convert, ["--from", "hf", "--src", src, "--dst", dst], capsys)
    assert rc == 2
    _assert_one_line_error(err, path, "missing tensor 'decoder.block.2.layer.2.DenseReluDense.wo.weight'",
                           "expected shape [16, 24]")
    assert not dst.exists()


def test_hf_mis_shaped_tensor(hf_dirs, tmp_path, capsys):
    src = fixtures.copy_tree(hf_dirs["safetensors"], str(tmp_path / "src"))

    def edit(t):
        t["encoder.block.1.layer.0.SelfAttention.k.weight"] = np.zeros((16, 18), np.float32)
    path = _rewrite_safetensors(src, edit)
    rc, _, err = _run(convert, ["--from", "hf", "--src", src, "--dst", tmp_path / "ckpt"], capsys)
    assert rc == 2
    _assert_one_line_error(err, path, "'encoder.block.1.layer.0.SelfAttention.k.weight' has shape [16, 18]",
                           "expected [18, 16]")
    assert not (tmp_path / "ckpt").exists()


def test_hf_unexpected_tensor_and_bad_files(hf_dirs, tmp_path, capsys):
    src = fixtures.copy_tree(hf_dirs["safetensors"], str(tmp_path / "src"))
    _rewrite_safetensors(src, lambda t: t.update({"decoder.block.3.layer.0.layer_norm.weight": np.ones(16, np.float32)}))
    with pytest.raises(CheckpointError, match="unexpected tensor 'decoder.block.3.layer.0.layer_norm.weight'"):
        conversion.load_hf_checkpoint(src)
    with open(os.path.join(src, "model.safetensors"), "wb") as f:
        f.write(b"not safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors: not a readable safetensors file"):
        conversion.load_hf_checkpoint(src)
    os.remove(os.path.join(src, "model.safetensors"))
    with pytest.raises(CheckpointError, match="no HF weights found"):
        conversion.load_hf_checkpoint(src)
    os.remove(os.path.join(src, "config.json"))
    with pytest.raises(CheckpointError, match=r"config.json: missing"):
        conversion.load_hf_checkpoint(src)
    with pytest.raises(CheckpointError, match=r"config.json: not a directory \(expected an HF model directory"):
        conversion.load_hf_checkpoint(os.path.join(hf_dirs["safetensors"], "config.json"))


def test_hf_sharded_with_missing_shard(hf_dirs, tmp_path):
    src = fixtures.copy_tree(hf_dirs["sharded"], str(tmp_path / "src"))
    shard = os.path.join(src, sorted(n for n in os.listdir(src) if n.startswith("model-0"))[1])
    os.remove(shard)
    with pytest.raises(CheckpointError, match=f"{shard}: missing shard"):
        conversion.load_hf_checkpoint(src)


def test_t5x_missing_and_mis_shaped_param(t5x_legacy, tmp_path, capsys):
    import copy
    from flax import serialization

    broken = copy.deepcopy(t5x_legacy)
    del broken["optimizer"]["target"]["decoder"]["layers_1"]["mlp"]["wi_1"]
    path = tmp_path / "missing.checkpoint_0"
    path.write_bytes(serialization.msgpack_serialize(broken))
    rc, _, err = _run(convert, ["--from", "t5x", "--src", path, "--dst", tmp_path / "a"], capsys)
    assert rc == 2
    _assert_one_line_error(err, str(path), "missing param 'decoder/layers_1/mlp/wi_1/kernel'", "expected shape [8, 16]")

    broken = copy.deepcopy(t5x_legacy)
    broken["optimizer"]["target"]["encoder"]["layers_1"]["attention"]["out"]["kernel"] = np.zeros((8, 12), np.float32)
    path = tmp_path / "shape.checkpoint_0"
    path.write_bytes(serialization.msgpack_serialize(broken))
    rc, _, err = _run(convert, ["--from", "t5x", "--src", path, "--dst", tmp_path / "b"], capsys)
    assert rc == 2
    _assert_one_line_error(err, str(path), "'encoder/layers_1/attention/out/kernel' has shape [8, 12]",
                           "expected [12, 8]")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()

    path = tmp_path / "garbage.checkpoint_0"
    path.write_bytes(b"\x00\x01garbage")
    rc, _, err = _run(convert, ["--from", "t5x", "--src", path, "--dst", tmp_path / "c"], capsys)
    assert rc == 2
    _assert_one_line_error(err, str(path), "not a T5X")


def test_unknown_format_missing_source_existing_destination(hf_dirs, tmp_path, capsys):
    rc, _, err = _run(convert, ["--from", "onnx", "--src", hf_dirs["safetensors"], "--dst", tmp_path / "x"], capsys)
    assert rc == 2
    _assert_one_line_error(err, "--from 'onnx': unknown format; expected one of hf, t5x")
    missing = tmp_path / "nowhere"
    rc, _, err = _run(convert, ["--from", "hf", "--src", missing, "--dst", tmp_path / "x"], capsys)
    assert rc == 2
    _assert_one_line_error(err, f"{missing}: no such file or directory")

    dst = tmp_path / "exists"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    rc, _, err = _run(convert, ["--from", "hf", "--src", hf_dirs["safetensors"], "--dst", dst], capsys)
    assert rc == 2
    _assert_one_line_error(err, f"{dst}: already exists (pass --overwrite to replace it)")
    assert (dst / "keep.txt").read_text() == "mine"
    rc, _, err = _run(convert, ["--from", "hf", "--src", hf_dirs["safetensors"], "--dst", dst, "--overwrite"], capsys)
    assert rc == 0, err
    assert not (dst / "keep.txt").exists() and checkpoints.latest_step(str(dst)) == 0
    assert _no_leftovers(tmp_path) == []


def test_failure_while_writing_leaves_nothing(hf_dirs, tmp_path, monkeypatch):
    def failing_save(directory, params, config, step=0):
        checkpoints.write_config(directory, config)  # something half-written, then the failure
        raise OSError("disk full")
    monkeypatch.setattr(checkpoints, "save_params", failing_save)
    with pytest.raises(OSError, match="disk full"):
        conversion.convert("hf", hf_dirs["safetensors"], str(tmp_path / "ckpt"))
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# The checkpoint format itself.
# ---------------------------------------------------------------------------------------------

def test_restore_validates_against_the_config(hf_dirs, tmp_path):
    dst = str(tmp_path / "ckpt")
    conversion.convert("hf", hf_dirs["safetensors"], dst)
    config_path = os.path.join(dst, "model_config.json")
    with open(config_path) as f:
        d = json.load(f)
    with open(config_path, "w") as f:
        json.dump({**d, "mlp_dim": 32}, f)
    with pytest.raises(CheckpointError, match=r"ckpt/0/params: param 'encoder/layers_0/mlp/wi_0/kernel' has shape "
                                              r"\[16, 24\], expected \[16, 32\]"):
        checkpoints.restore_params(dst)
    with open(config_path, "w") as f:
        json.dump({**d, "num_decoder_layers": 4}, f)
    with pytest.raises(CheckpointError, match=r"missing param 'decoder/layers_3/pre_self_attention_layer_norm/scale' "
                                              r"\(expected shape \[16\]\) \(and 13 more missing\)"):
        checkpoints.restore_params(dst)
    with pytest.raises(CheckpointError, match="no step 7; steps present: \\[0\\]"):
        checkpoints.restore_params(dst, step=7)
    os.remove(config_path)
    with pytest.raises(CheckpointError, match="not a recjax checkpoint directory \\(no model_config.json in it or in "):
        checkpoints.restore_params(dst)


def test_full_train_state_checkpoint_restores_params_only_and_sharded(hf_dirs, tmp_path):
    """A trainer's checkpoint (params + optimizer + data position) in the same format."""
    import jax
    import optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    params, config = conversion.load_hf_checkpoint(hf_dirs["safetensors"])
    opt_state = optax.adamw(1e-3).init(params)
    directory = str(tmp_path / "train")
    checkpoints.write_config(directory, config)
    manager = checkpoints.open_manager(directory, max_to_keep=2)
    for step in (10, 20, 30):
        manager.save(step, args=checkpoints.composite_save_args(params, opt_state, {"examples_seen": step * 8}))
    manager.wait_until_finished()
    manager.close()
    assert sorted(os.listdir(directory)) == ["20", "30", "model_config.json"]
    assert sorted(os.listdir(os.path.join(directory, "30"))) == sorted(
        ["_CHECKPOINT_METADATA", "commit_success.txt", "params", "opt_state", "data_state"])
    assert checkpoints.latest_step(directory) == 30

    restored, restored_config = checkpoints.restore_params(directory)
    assert restored_config == config
    for key, value in param_tree.flatten_params(params).items():
        np.testing.assert_array_equal(param_tree.flatten_params(restored)[key], value)

    mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model"))
    shardings = jax.tree.map(lambda x: NamedSharding(mesh, PartitionSpec(None, "model") if x.ndim == 2
                                                     and x.shape[1] % 4 == 0 else PartitionSpec()), params)
    sharded, _ = checkpoints.restore_params(directory, step=20, shardings=shardings)
    query = sharded["encoder"]["layers_0"]["attention"]["query"]["kernel"]  # [16, 18]: 18 % 4 != 0
    wi = sharded["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"]  # [16, 24]
    assert isinstance(wi, jax.Array) and wi.sharding == shardings["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"]
    assert wi.addressable_shards[0].data.shape == (16, 6)
    np.testing.assert_array_equal(np.asarray(query), params["encoder"]["layers_0"]["attention"]["query"]["kernel"])

    # And the trainer's other items are there for it (restored with the same manager).
    manager = checkpoints.open_manager(directory, create=False)
    import orbax.checkpoint as ocp
    data_state = manager.restore(30, args=ocp.args.Composite(data_state=ocp.args.JsonRestore()))["data_state"]
    manager.close()
    assert data_state == {"examples_seen": 240}


def test_save_params_refuses_invalid_params_and_a_second_model(hf_dirs, tmp_path):
    params, config = conversion.load_hf_checkpoint(hf_dirs["safetensors"])
    flat = param_tree.flatten_params(params)
    del flat["encoder/encoder_norm/scale"]
    with pytest.raises(CheckpointError, match=r"params to save: missing param 'encoder/encoder_norm/scale' "
                                              r"\(expected shape \[16\]\)"):
        checkpoints.save_params(str(tmp_path / "a"), param_tree.unflatten_params(flat), config)
    assert not (tmp_path / "a").exists()
    checkpoints.save_params(str(tmp_path / "b"), params, config, step=0)
    other = config.replace(layer_norm_epsilon=config.layer_norm_epsilon * 10)  # same shapes, another model
    with pytest.raises(CheckpointError, match=r"holds a different model config \(layer_norm_epsilon "
                                              rf"{config.layer_norm_epsilon!r} there, {other.layer_norm_epsilon!r} here\)"):
        checkpoints.save_params(str(tmp_path / "b"), params, other, step=1)
    # Training-only fields (dropout, activation dtype) do not make another model.
    checkpoints.save_params(str(tmp_path / "b"), params, config.replace(dropout_rate=0.3, dtype="bfloat16"), step=2)
