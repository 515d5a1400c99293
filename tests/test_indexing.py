"""Item-identifier schemes (`recjax index`): unique codes, the trie they make, no leakage of the
held-out items, the grown vocabulary through tasks, training, decoding, convert and export."""
import dataclasses
import json
import os

import numpy as np
import pytest

from recjax.decoding import DecodeOptions
from recjax.data import load_prepared
from recjax.items.reindex import reindex
from recjax.items.schemes import IndexOptions, build_index, parse_code_text
from recjax.items import quantize
from recjax.items.vocabulary import item_code_vocabulary

STRUCTURED = ("collaborative", "semantic_rqkmeans", "semantic_rqvae")
SMALL = dict(levels=2, codebook_size=4, embedding_dim=8, rqvae_steps=60)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from recjax.data.writing import make_synthetic

    root = tmp_path_factory.mktemp("indexing")
    return make_synthetic(str(root / "data"), num_users=200, num_items=60, seed=5, max_len=10, num_categories=4)


@pytest.mark.parametrize("scheme", ("random", "sequential") + STRUCTURED)
def test_every_scheme_gives_every_item_a_unique_id(synthetic, scheme):
    dataset = load_prepared(synthetic)
    index = build_index(dataset, IndexOptions(scheme=scheme, **SMALL))
    assert len(index.item_ids) == dataset.num_items
    assert len(set(index.item_ids)) == dataset.num_items
    if scheme in STRUCTURED:
        assert index.codes.shape == (dataset.num_items, SMALL["levels"] + 1)
        assert [parse_code_text(t) for t in index.item_ids] == index.codes.tolist()
        assert (index.codes[:, :-1] < SMALL["codebook_size"]).all()
        # the extra code numbers the items of one L-code group 0, 1, 2, ...
        groups = {}
        for row in index.codes.tolist():
            groups.setdefault(tuple(row[:-1]), []).append(row[-1])
        assert all(sorted(v) == list(range(len(v))) for v in groups.values())
        assert len(index.code_pieces) == SMALL["levels"] * SMALL["codebook_size"] + index.info["collision_code_size"]


def test_random_scheme_is_the_prepared_default(synthetic):
    dataset = load_prepared(synthetic)
    assert build_index(dataset, IndexOptions(scheme="random", seed=dataset.seed)).item_ids == dataset.item_ids


def test_dedup_codes_and_collision_stats_by_hand():
    codes = np.array([[0, 1], [0, 1], [2, 3], [0, 1]], np.int32)
    full = quantize.dedup_codes(codes, seed=0)
    assert full[:, :2].tolist() == codes.tolist()
    assert sorted(full[[0, 1, 3], 2].tolist()) == [0, 1, 2] and full[2, 2] == 0
    stats = quantize.collision_stats(codes)
    assert stats == {"colliding_items": 3, "collision_rate": 0.75, "max_group": 3, "unique_prefixes": 2}


@pytest.mark.parametrize("scheme", ("random",) + STRUCTURED)
def test_ids_do_not_depend_on_validation_or_test_items(synthetic, scheme):
    """Replacing every user's validation and test items by other items changes no ID."""
    dataset = load_prepared(synthetic)
    rng = np.random.default_rng(0)
    changed = []
    for seq in dataset.sequences:
        seq = seq.copy()
        others = np.setdiff1d(np.arange(dataset.num_items), seq)
        seq[-2:] = rng.choice(others, size=2, replace=False)
        changed.append(seq)
    swapped = dataclasses.replace(dataset, sequences=changed)
    assert sum((a[-2:] != b[-2:]).sum() for a, b in zip(dataset.sequences, changed)) > 0
    options = IndexOptions(scheme=scheme, embeddings="collaborative", **SMALL)
    assert build_index(dataset, options).item_ids == build_index(swapped, options).item_ids


def test_leak_check_is_able_to_fail(synthetic, monkeypatch):
    """With a scheme fed the full sequences (a leak), the swap of the test above changes IDs."""
    from recjax.data.prepared import PreparedDataset

    monkeypatch.setattr(PreparedDataset, "train_sequences", lambda self: list(self.sequences))
    with pytest.raises(AssertionError):
        test_ids_do_not_depend_on_validation_or_test_items(synthetic, "collaborative")


@pytest.mark.parametrize("bad, message", [
    (dict(scheme="semantic"), "--scheme 'semantic': unknown"),
    (dict(scheme="semantic_rqkmeans", levels=0), "--levels 0"),
    (dict(scheme="semantic_rqkmeans", levels=9), "--levels 9"),
    (dict(scheme="collaborative", codebook_size=1), "--codebook_size 1"),
    (dict(scheme="semantic_rqkmeans", embeddings="bert"), "--embeddings 'bert'"),
])
def test_bad_options_are_one_line(bad, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        IndexOptions(**bad)


def test_embedding_file_errors_name_the_file(synthetic, tmp_path, capsys):
    from recjax.cli import index

    missing = tmp_path / "nope.npy"
    rc = index.main(["--scheme", "semantic_rqkmeans", "--embeddings", "file", "--embeddings_file", str(missing),
                     "--src", synthetic, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("recjax index: error: ") and str(missing) in err[-1]
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((5, 3), np.float32))
    rc = index.main(["--scheme", "semantic_rqkmeans", "--embeddings", "file", "--embeddings_file", str(wrong),
                     "--src", synthetic, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "shape (5, 3), expected [60, dim]" in err[-1] and str(wrong) in err[-1]
    assert not os.path.exists(tmp_path / "out")
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".out")]  # nothing half-written


def test_index_command_writes_a_dataset_that_records_its_scheme(synthetic, tmp_path, capsys):
    from recjax.cli import index

    out = tmp_path / "sem"
    rc = index.main(["--scheme", "semantic_rqkmeans", "--levels", "2", "--codebook_size", "4",
                     "--embedding_dim", "8", "--src", synthetic, "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "codes used" in printed and "collisions before the extra code" in printed and "prefix tree" in printed
    ds, src = load_prepared(str(out)), load_prepared(synthetic)
    assert ds.indexing == "semantic_rqkmeans" and ds.index_info["levels"] == 2
    assert all(np.array_equal(a, b) for a, b in zip(ds.sequences, src.sequences))
    assert ds.item_titles == src.item_titles
    codes = np.load(out / "item_codes.npy")
    assert [parse_code_text(t) for t in ds.item_ids] == codes.tolist()
    meta = json.loads((out / "prepared.json").read_text())
    assert meta["indexing"] == "semantic_rqkmeans" and meta["item_index"]["code_pieces"] == ds.code_pieces


# ------------------------------------------------------------------------------------------------
# Through the vocabulary, tasks, trie and decoding.
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def semantic(synthetic, tmp_path_factory):
    import tasks

    out = str(tmp_path_factory.mktemp("sem") / "data")
    reindex(synthetic, out, IndexOptions(scheme="semantic_rqkmeans", **SMALL), log=lambda s: None)
    vocab_path = tasks.dataset_vocabulary(data_dir=synthetic, vocab_size=400)
    registered = tasks.register_dataset(out, "semsynth", vocab_path, max_history=6, num_negatives=9)
    return {"data_dir": out, "source": synthetic, "base_vocab": vocab_path, "registered": registered}


def test_code_tokens_follow_the_sentinels_and_ids_are_l_plus_1_tokens(semantic):
    import tasks

    registered = semantic["registered"]
    base = tasks.load_vocabulary(semantic["base_vocab"])
    grown = registered.vocabulary
    dataset = registered.builder.dataset
    assert grown.vocab_size == base.vocab_size + len(dataset.code_pieces)
    # every old id keeps its meaning, the sentinels included
    text = "history: " + dataset.item_titles[0]
    assert grown.encode(text) == base.encode(text)
    assert tasks.vocab.sentinel_ids(grown).tolist() == tasks.vocab.sentinel_ids(base).tolist()
    for item_id in dataset.item_ids:
        ids = grown.encode(item_id)
        assert len(ids) == SMALL["levels"] + 1 and min(ids) >= base.vocab_size, (item_id, ids)
        assert grown.decode(ids) == item_id
    # inside a rendered history too: exactly the code tokens, no separate word-start piece
    a, b = (grown.encode(dataset.item_ids[i]) for i in (0, 1))
    ids = grown.encode(f"bought {dataset.item_ids[0]}; {dataset.item_ids[1]}.")
    assert any(ids[i:i + len(a)] == a for i in range(len(ids))) and any(ids[i:i + len(b)] == b for i in range(len(ids)))
    assert grown.tokenizer.piece_to_id("\u2581") not in ids, [grown.tokenizer.id_to_piece(i) for i in ids]


def test_vocab_size_is_derived_from_the_dataset_and_base_vocabulary(semantic, synthetic):
    """`items.vocab_size` (VOCAB_SIZE = @items.vocab_size() in Gin) is the registered task
    vocabulary padded to 128, for structured and numeric IDs alike; Gin evaluates it."""
    import gin

    import tasks
    from recjax.config import T5Config, padded_vocab_size
    from recjax.items.vocabulary import vocab_size

    registered = semantic["registered"]
    derived = vocab_size(semantic["data_dir"], semantic["base_vocab"])
    assert derived == padded_vocab_size(registered.vocab_size) and derived % 128 == 0
    plain = tasks.register_dataset(synthetic, "plainvocab", semantic["base_vocab"], max_history=6, num_negatives=9)
    assert vocab_size(synthetic, semantic["base_vocab"]) == padded_vocab_size(plain.vocab_size) < derived
    gin.clear_config()
    try:
        gin.parse_config([f"items.vocab_size.data_dir = '{semantic['data_dir']}'",
                          f"items.vocab_size.vocab_path = '{semantic['base_vocab']}'",
                          "T5Config.vocab_size = @items.vocab_size()"])
        assert T5Config().vocab_size == derived
    finally:
        gin.clear_config()


def test_trie_of_a_structured_scheme_has_depth_l_plus_2_and_its_fanout(semantic):
    from recjax.evaluation import catalog_of

    dataset = semantic["registered"].builder.dataset
    catalog = catalog_of("semsynth", -(-semantic["registered"].vocabulary.vocab_size // 128) * 128)
    assert catalog.trie.depth == SMALL["levels"] + 2  # L codes + collision code + EOS
    codes = np.array([parse_code_text(t) for t in dataset.item_ids])
    assert catalog.trie.root_degree == len(np.unique(codes[:, 0]))
    assert catalog.trie.num_items == dataset.num_items


@pytest.mark.slow
def test_a_model_trained_on_semantic_ids_decodes_only_valid_items(semantic, tmp_path):
    """Train a tiny T5 on the re-indexed synthetic catalog through `train_lib.train`, then decode
    retrieval constrained and free: constrained returns catalog items only."""
    import flax
    import jax

    from recjax import train_lib
    from recjax.config import T5Config
    from recjax.evaluation import EvalOptions, evaluate_tasks
    from recjax.model import EncoderDecoderModel

    vocab = -(-semantic["registered"].vocabulary.vocab_size // 128) * 128
    config = T5Config(vocab_size=vocab, emb_dim=32, num_heads=2, head_dim=8, num_encoder_layers=1,
                      num_decoder_layers=1, mlp_dim=48)
    with pytest.raises(ValueError, match=f"set VOCAB_SIZE = {vocab}"):
        train_lib.train(model_dir=str(tmp_path / "small"), mixture_or_task_name="semsynth_rec",
                        task_feature_lengths={"inputs": 64, "targets": 8}, train_steps=2, batch_size=8,
                        model_config=config.replace(vocab_size=config.vocab_size - 128), progress=False)
    state = train_lib.train(model_dir=str(tmp_path / "run"), mixture_or_task_name="semsynth_rec",
                            task_feature_lengths={"inputs": 64, "targets": 8}, train_steps=30, batch_size=16,
                            model_config=config, progress=False, async_checkpointing=False)
    params = jax.tree_util.tree_map(np.asarray, flax.linen.meta.unbox(state.params))
    [result] = evaluate_tasks(EncoderDecoderModel(config), params, "semsynth_retrieval", "test",
                              options=EvalOptions(batch_size=16, decode=DecodeOptions(beam_size=12, top_k=10), max_examples=32,
                                                  progress=False))
    dataset = semantic["registered"].builder.dataset
    # served with the random-ID dataset it was not trained on: one line, before any decoding
    import tasks
    from recjax.checkpoints import Checkpoint, CheckpointError

    tasks.register_dataset(semantic["source"], "plainsynth", semantic["base_vocab"], max_history=6, num_negatives=9)
    with Checkpoint(str(tmp_path / "run")) as checkpoint:
        with pytest.raises(CheckpointError, match="trained on dataset 'semsynth' with 'semantic_rqkmeans' item IDs .* "
                                                  "dataset 'plainsynth' has 'random' item IDs"):
            checkpoint.check_item_ids(tasks.item_ids_record("plainsynth_rec"))
        checkpoint.check_item_ids(tasks.item_ids_record("semsynth_retrieval"))  # its own: accepted
    assert result.metrics["valid_id_rate"] == 1.0
    for row in result.extra["predictions"]:
        assert row["ranked"] and set(row["ranked"]) <= set(dataset.item_ids)
        assert len(row["ranked"]) == len(set(row["ranked"]))


# ------------------------------------------------------------------------------------------------
# TIGER's form: inputs of codes only, a vocabulary of only the codes (#22 item 3).
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def codes_only(semantic):
    import tasks

    vocab_path = tasks.code_vocabulary(data_dir=semantic["data_dir"])
    return tasks.register_dataset(semantic["data_dir"], "codesynth", vocab_path, max_history=6, num_negatives=9,
                                  input_form="codes", item_text=False)


def test_a_code_vocabulary_holds_the_codes_and_inputs_are_codes_alone(codes_only, semantic, synthetic):
    import tasks
    from recjax.config import padded_vocab_size
    from recjax.items.vocabulary import vocab_size

    dataset = codes_only.builder.dataset
    specials = 4 + 100  # pad, EOS, unk, the word boundary; the sentinels
    assert codes_only.vocab_size == specials + len(dataset.code_pieces) < 128
    derived = vocab_size(semantic["data_dir"], tasks.code_vocabulary(data_dir=semantic["data_dir"]))
    assert derived == padded_vocab_size(codes_only.vocab_size) == 128
    tok = codes_only.tokenizer
    for item_id in dataset.item_ids:  # an item is its L + 1 code tokens, as with FLAN-T5's vocabulary
        ids = tok.encode(item_id)
        assert len(ids) == SMALL["levels"] + 1 and min(ids) >= specials and tok.decode(ids) == item_id
    chunk = next(codes_only.builder.token_chunks("retrieval", "train", 0, 0, True))
    values = chunk["inputs_values"]
    assert values.size and values.min() >= specials  # nothing but codes: no words, no <unk>, no separators
    row = codes_only.builder.user_examples("retrieval", "train", 3, 0, 0)[-1]
    history = [dataset.item_ids[i] for i in codes_only.builder.train[3][:-1]][-6:]
    assert row["inputs"] == " ".join(history)
    with pytest.raises(ValueError, match="a code vocabulary needs structured item IDs"):
        tasks.code_vocabulary(data_dir=synthetic)
    with pytest.raises(ValueError, match="input_form must be one of"):
        tasks.register_dataset(semantic["data_dir"], "badform", semantic["base_vocab"], input_form="ids")


def test_every_kind_has_a_codes_form_of_codes_and_sentinels_only(codes_only):
    """input_form='codes' for the other kinds (#23 item 5: the auxiliary tasks at a CPU-convergent
    budget): ranking, MIM, MLM and BPR inputs are their marker, the items' codes and sentinels, with
    no <unk> under a code-only vocabulary; each kind is told apart by its first token; the targets
    are what the template form's are (the same random draws)."""
    from tasks import templates
    from tasks.examples import ExampleBuilder, TaskOptions

    builder, tok = codes_only.builder, codes_only.tokenizer
    dataset = builder.dataset
    words = ExampleBuilder(dataset, dataclasses.replace(builder.options, input_form="template"), tokenizer=tok,
                           sentinel_ids=builder.sentinel_ids)
    assert isinstance(words.options, TaskOptions)
    firsts = {}
    for kind in ("retrieval", "ranking", "mim", "mlm", "bpr"):
        for split in ("train", "test"):
            chunk = next(builder.token_chunks(kind, split, 0, 0, True))
            for key in ("inputs", "targets"):
                assert tok.unk_id() not in chunk[f"{key}_values"], (kind, split, key)
        rows = builder.user_examples(kind, "train", 3, 0, 0)
        plain = words.user_examples(kind, "train", 3, 0, 0)
        row = rows[-1]
        inputs = row.get("inputs_pretokenized", row["inputs"])
        firsts[kind] = inputs.split()[0] if kind != "retrieval" else None
        if kind != "mlm":  # MLM's spans are drawn over other tokens
            assert [r["targets"].replace(", ", " ") for r in rows] == [r["targets"].replace(", ", " ") for r in plain], kind
            assert [r["target_id"] for r in rows] == [r["target_id"] for r in plain], kind
    assert firsts == {"retrieval": None, **templates.CODE_MARKERS}
    history = " ".join(dataset.item_ids[i] for i in builder.train[3][:-1][-builder.options.ranking_max_history:])
    ranking = builder.user_examples("ranking", "train", 3, 0, 0)[-1]
    assert ranking["inputs"] == f"<extra_id_99> {history} <extra_id_95> {ranking['candidate_ids']}"


@pytest.mark.slow
def test_a_code_vocabulary_model_trains_packed_and_decodes_only_catalog_items(codes_only, tmp_path):
    """A T5 with 128 vocabulary rows trains on first-fit packed codes (Grain) and its constrained
    retrieval returns catalog items only; a VOCAB_SIZE below the vocabulary is one line."""
    import flax
    import jax

    from recjax import train_lib
    from recjax.config import T5Config
    from recjax.evaluation import EvalOptions, evaluate_tasks
    from recjax.model import EncoderDecoderModel

    config = T5Config(vocab_size=128, emb_dim=32, num_heads=2, head_dim=8, num_encoder_layers=1,
                      num_decoder_layers=1, mlp_dim=48)
    with pytest.raises(ValueError, match="its vocabulary has .* ids but the model's vocab_size is 64; set VOCAB_SIZE = 128"):
        train_lib.train(model_dir=str(tmp_path / "small"), mixture_or_task_name="codesynth_retrieval",
                        task_feature_lengths={"inputs": 32, "targets": 12}, train_steps=2, batch_size=8,
                        model_config=config.replace(vocab_size=64), progress=False)
    state = train_lib.train(model_dir=str(tmp_path / "run"), mixture_or_task_name="codesynth_retrieval",
                            task_feature_lengths={"inputs": 32, "targets": 12}, train_steps=30, batch_size=8,
                            model_config=config, progress=False, async_checkpointing=False, loader="grain",
                            pack="first_fit")
    params = jax.tree_util.tree_map(np.asarray, flax.linen.meta.unbox(state.params))
    [result] = evaluate_tasks(EncoderDecoderModel(config), params, "codesynth_retrieval", "test",
                              options=EvalOptions(batch_size=16, decode=DecodeOptions(beam_size=12, top_k=10),
                                                  max_examples=32, progress=False))
    dataset = codes_only.builder.dataset
    assert result.metrics["valid_id_rate"] == 1.0
    for row in result.extra["predictions"]:
        assert row["ranked"] and set(row["ranked"]) <= set(dataset.item_ids)
        assert len(row["ranked"]) == len(set(row["ranked"]))
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert max(r["examples_per_sec"] / r["steps_per_sec"] for r in rows if r["split"] == "train") > 8  # packed


# ------------------------------------------------------------------------------------------------
# Convert with a grown vocabulary, export, transformers.
# ------------------------------------------------------------------------------------------------

def test_grown_vocabulary_keeps_old_logits_and_transformers_loads_the_export(tmp_path, semantic):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import jax

    import t5_test_models as fixtures
    from recjax import checkpoints, conversion, network
    from recjax.cli import export

    hf_model = fixtures.random_hf_model(seed=3)
    src = fixtures.save_hf(hf_model, str(tmp_path / "hf"), "safetensors")
    dst = str(tmp_path / "grown")
    config, _ = conversion.convert("hf", src, dst, vocab_size=256, seed=1)
    assert config.vocab_size == 256
    params, config = checkpoints.restore_params(dst)
    old = fixtures.HF_TINY["vocab_size"]
    emb = params["token_embedder"]["embedding"]
    np.testing.assert_array_equal(emb[:old], hf_model.shared.weight.detach().numpy())
    assert np.isfinite(emb[old:]).all() and len(np.unique(emb[old:, 0])) == 256 - old  # seeded noise

    rng = np.random.default_rng(0)
    enc = rng.integers(2, old, size=(2, 7)).astype(np.int32)
    dec = np.concatenate([np.zeros((2, 1), np.int32), rng.integers(2, old, size=(2, 4))], 1).astype(np.int32)
    apply = jax.jit(lambda p, e, d: network.Transformer(config).apply({"params": p}, e, d, enable_dropout=False))
    with torch.no_grad():
        want = hf_model(input_ids=torch.tensor(enc, dtype=torch.long),
                        decoder_input_ids=torch.tensor(dec, dtype=torch.long)).logits.numpy()
    np.testing.assert_allclose(np.asarray(apply(params, enc, dec))[..., :old], want, atol=1e-4, rtol=0)

    # New tokens in, new tokens out: the exported HF model computes what recjax computes.
    out = str(tmp_path / "export")
    assert export.main(["--checkpoint", dst, "--out", out, "--format", "hf"]) == 0
    loaded = transformers.T5ForConditionalGeneration.from_pretrained(out).eval()
    enc_new = rng.integers(old, 256, size=(2, 7)).astype(np.int32)
    dec_new = np.concatenate([np.zeros((2, 1), np.int32), rng.integers(old, 256, size=(2, 4))], 1).astype(np.int32)
    with torch.no_grad():
        got = loaded(input_ids=torch.tensor(enc_new, dtype=torch.long),
                     decoder_input_ids=torch.tensor(dec_new, dtype=torch.long)).logits.numpy()
    np.testing.assert_allclose(got, np.asarray(apply(params, enc_new, dec_new)), atol=1e-4, rtol=0)


def test_exported_grown_tokenizer_tokenizes_like_recjax(semantic, t5_vocab_path, tmp_path):
    """FLAN-T5's vocabulary grown by the code pieces, written by export: transformers' tokenizer
    gives the ids seqio gives, code tokens and sentinels included."""
    transformers = pytest.importorskip("transformers")
    import tasks
    from recjax import exporting
    from recjax.config import T5Config

    dataset = semantic["registered"].builder.dataset
    path = item_code_vocabulary(str(t5_vocab_path), dataset.code_pieces, str(tmp_path / "vocab"))
    vocabulary = tasks.load_vocabulary(path, extra_ids=0)
    config = T5Config(vocab_size=-(-vocabulary.vocab_size // 128) * 128, emb_dim=8, num_heads=1, head_dim=8,
                      num_encoder_layers=1, num_decoder_layers=1, mlp_dim=8)
    exporting.write_hf_tokenizer(path, str(tmp_path), config)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    text = (f"Purchase history of a user, oldest first: {dataset.item_ids[3]} (lip gloss); {dataset.item_ids[4]}. "
            "Which item <extra_id_0> next?")
    ids = vocabulary.encode(text)
    assert sum(i >= 32100 for i in ids) == 2 * (SMALL["levels"] + 1)
    assert tokenizer(text).input_ids == ids + [1]


def test_t5_encoder_embeddings_mean_pool_real_tokens_only(synthetic, shared_data, t5_vocab_path, tmp_path):
    """--embeddings t5 over a converted T5X checkpoint: padding does not move the mean, and the
    first item's vector is its encoder states averaged by hand."""
    import jax

    from recjax import conversion, encoder_embeddings, network
    from recjax.items import embeddings
    import sentencepiece as spm

    src = shared_data / "t5x_tiny" / "test_t5_tiny.checkpoint_0"
    if not src.exists():
        pytest.skip(f"T5X tiny checkpoint not found at {src}")
    ckpt = str(tmp_path / "ckpt")
    config, _ = conversion.convert("t5x", str(src), ckpt)
    dataset = load_prepared(synthetic)
    short = embeddings.item_embeddings(dataset, "t5", checkpoint=ckpt, encode_items=encoder_embeddings.t5_encoder(
        ckpt, str(t5_vocab_path), batch_size=16, max_length=48))
    long = embeddings.item_embeddings(dataset, "t5", checkpoint=ckpt, encode_items=encoder_embeddings.t5_encoder(
        ckpt, str(t5_vocab_path), batch_size=16, max_length=96))
    np.testing.assert_allclose(short, long, atol=1e-5)
    from recjax import checkpoints
    params, config = checkpoints.restore_params(ckpt)
    ids = spm.SentencePieceProcessor(model_file=str(t5_vocab_path)).encode(embeddings.item_documents(dataset)[0]) + [1]
    states = network.Transformer(config).apply({"params": params}, np.asarray([ids], np.int32), enable_dropout=False,
                                               method=network.Transformer.encode)
    want = np.asarray(jax.device_get(states))[0].mean(0)
    np.testing.assert_allclose(short[0], want / np.linalg.norm(want), atol=1e-5)


def test_initial_checkpoint_with_a_smaller_vocabulary_is_grown(tmp_path):
    """INITIAL_CHECKPOINT_PATH of a plain-vocabulary checkpoint for a run with code tokens: old rows
    exact, new rows finite and seeded, the model config of the run."""
    import flax
    import jax

    from recjax import checkpoints, network
    from recjax.config import T5Config

    config = T5Config(vocab_size=128, emb_dim=16, num_heads=2, head_dim=8, num_encoder_layers=1,
                      num_decoder_layers=1, mlp_dim=24)
    params = jax.tree_util.tree_map(np.asarray, flax.linen.meta.unbox(network.init_params(config, jax.random.PRNGKey(0))))
    checkpoints.save_params(str(tmp_path / "init"), params, config)
    run = config.replace(vocab_size=256)
    grown, got = checkpoints.restore_initial_params(str(tmp_path / "init"), run, None, seed=3)
    assert got == run
    emb, logits = np.asarray(grown["token_embedder"]["embedding"]), np.asarray(grown["decoder"]["logits_dense"]["kernel"])
    assert emb.shape == (256, 16) and logits.shape == (16, 256)
    np.testing.assert_array_equal(emb[:128], params["token_embedder"]["embedding"])
    np.testing.assert_array_equal(logits[:, :128], params["decoder"]["logits_dense"]["kernel"])
    again, _ = checkpoints.restore_initial_params(str(tmp_path / "init"), run, None, seed=3)
    np.testing.assert_array_equal(np.asarray(again["token_embedder"]["embedding"]), emb)
    with pytest.raises(checkpoints.CheckpointError, match="can only grow"):
        checkpoints.grow_vocabulary(params, config, 64)


def test_index_refuses_flags_its_scheme_does_not_read(synthetic, tmp_path, capsys):
    """A flag the scheme (or embedding source) would ignore is refused in one line, before any
    work; `--embeddings file` without the file says what is missing."""
    from recjax.cli import index

    cases = [
        (["--scheme", "collaborative", "--embeddings_file", "x.npy"], "--embeddings_file is not read by --scheme collaborative"),
        (["--scheme", "random", "--levels", "2"], "--levels is not read by --scheme random"),
        (["--scheme", "semantic_rqkmeans", "--embeddings", "collaborative", "--text_weighting", "bm25"],
         "--text_weighting is not read by --scheme semantic_rqkmeans --embeddings collaborative"),
        (["--scheme", "semantic_rqkmeans", "--rqvae_steps", "10"], "--rqvae_steps is not read by --scheme semantic_rqkmeans"),
        (["--scheme", "semantic_rqkmeans", "--embeddings", "file"],
         "--embeddings file needs --embeddings_file (a [num_items, dim] .npy matrix)"),
    ]
    for flags, message in cases:
        rc = index.main(flags + ["--src", synthetic, "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and err[0].startswith("recjax index: error: ") and message in err[0], (flags, err)
        assert not os.path.exists(tmp_path / "out")


def test_index_warns_when_a_prefix_holds_many_items(synthetic, tmp_path, capsys):
    """Sixty items in 2 x 2 prefixes: groups far above 16 items; `recjax index` says so on stderr,
    with the group sizes and what would spread them."""
    from recjax.cli import index

    rc = index.main(["--scheme", "collaborative", "--levels", "2", "--codebook_size", "2", "--embedding_dim", "8",
                     "--src", synthetic, "--out", str(tmp_path / "cid")])
    captured = capsys.readouterr()
    assert rc == 0 and "warning:" not in captured.out
    [warning] = [line for line in captured.err.splitlines() if line.startswith("warning: ")]
    assert "items share one L-code prefix (largest groups: " in warning and "here 2 x 2" in warning


def test_balanced_assign_respects_capacities_and_prefers_the_nearest():
    """By hand: three points nearest cluster 0 with room for two: the two nearest stay, the third
    goes to its next-nearest cluster with room; unconstrained capacities give the argmin."""
    d = np.array([[0.1, 0.9, 0.5], [0.2, 0.8, 0.6], [0.3, 0.4, 0.7], [0.9, 0.1, 0.5]])
    assert quantize.balanced_assign(d, [2, 2, 2]).tolist() == [0, 0, 1, 1]
    assert quantize.balanced_assign(d, [2, 1, 2]).tolist() == [0, 0, 2, 1]
    assert quantize.balanced_assign(d, 4).tolist() == d.argmin(1).tolist()
    with pytest.raises(ValueError, match="capacities hold 3 points, fewer than the 4"):
        quantize.balanced_assign(d, 1)


@pytest.mark.parametrize("scheme", STRUCTURED)
def test_balanced_codes_leave_no_crowded_prefix(synthetic, scheme):
    """Sixty items in 2 x 8 codes: unbalanced, some prefix holds several items (the extra code
    separates them); balanced, no code of a level holds more than ceil(60 / 8) = 8 items and no
    prefix more than one, so the extra code is 0 for every item."""
    dataset = load_prepared(synthetic)
    small = dict(SMALL, codebook_size=8)
    plain = build_index(dataset, IndexOptions(scheme=scheme, **small))
    balanced = build_index(dataset, IndexOptions(scheme=scheme, balanced=True, **small))
    assert plain.info["collisions"]["max_group"] > 1
    assert balanced.info["balanced"] and balanced.info["collisions"]["max_group"] == 1
    assert (balanced.codes[:, -1] == 0).all() and len(set(balanced.item_ids)) == dataset.num_items
    if scheme != "collaborative":  # hierarchical k-means balances each parent's children instead
        assert np.bincount(balanced.codes[:, 0]).max() <= 8


def test_balanced_semantic_codes_on_real_beauty(shared_data):
    """Beauty's 12,101 items from their keyword text, RQ-KMeans 3 x 256: a third of the items share
    all three codes with another (groups of dozens); balanced, none does and every level-a code
    holds at most ceil(12,101 / 256) = 48 items."""
    from recjax.data.preparation import build

    dataset, _ = build("p5", str(shared_data / "beauty"), "beauty")
    options = dict(scheme="semantic_rqkmeans", levels=3, codebook_size=256)
    plain = build_index(dataset, IndexOptions(**options))
    balanced = build_index(dataset, IndexOptions(balanced=True, **options))
    assert plain.info["collisions"]["colliding_items"] > 3000 and plain.info["collisions"]["max_group"] > 20
    assert balanced.info["collisions"]["colliding_items"] == 0
    assert np.bincount(balanced.codes[:, 0]).max() <= 48
