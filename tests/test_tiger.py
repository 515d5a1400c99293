"""TIGER as a recjax configuration (#23 item 1): gin/baselines/tiger_{beauty,sports,toys}.gin
build TIGER's model, differ only in the dataset, and train on a synthetic catalog with semantic
IDs and a code-only vocabulary, decoding only catalog items; TIGER's user tokens are a function of
the user alone."""
import json

import gin
import pytest

from recjax import gin_utils, train_lib
from recjax.config import T5Config

from conftest import REPO_ROOT

DATASETS = ("beauty", "sports", "toys")


@pytest.fixture
def fresh_gin():
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.fixture(scope="module")
def semantic_catalog(tmp_path_factory):
    from recjax.data.writing import make_synthetic
    from recjax.items.reindex import reindex
    from recjax.items.schemes import IndexOptions

    root = tmp_path_factory.mktemp("tiger")
    source = make_synthetic(str(root / "data"), num_users=200, num_items=60, seed=5, max_len=10, num_categories=4)
    out = str(root / "semantic")
    reindex(source, out, IndexOptions(scheme="semantic_rqkmeans", levels=3, codebook_size=4, embedding_dim=8),
            log=lambda s: None)
    return out


def _bindings(name: str) -> dict:
    gin_utils.parse_gin([str(REPO_ROOT / f"gin/baselines/tiger_{name}.gin")], ["DATA_DIR = 'unused'"])
    return {k: gin.query_parameter(k) for k in ("T5Config.emb_dim", "T5Config.num_heads", "T5Config.head_dim",
                                                "T5Config.num_encoder_layers", "T5Config.num_decoder_layers",
                                                "T5Config.mlp_dim", "T5Config.dropout_rate",
                                                "tasks.register_dataset.input_form", "train_lib.train.loader",
                                                "train_lib.train.pack", "%MIXTURE_OR_TASK_NAME", "%MODEL_DIR",
                                                "%DATA_DIR", "tasks.register_dataset.name")}


def test_the_three_files_are_tigers_model_and_differ_only_in_the_dataset(fresh_gin):
    runs = {}
    for name in DATASETS:
        gin.clear_config()
        runs[name] = _bindings(name)
    beauty = runs["beauty"]
    assert (beauty["T5Config.emb_dim"], beauty["T5Config.num_heads"], beauty["T5Config.head_dim"],
            beauty["T5Config.num_encoder_layers"], beauty["T5Config.num_decoder_layers"],
            beauty["T5Config.mlp_dim"]) == (128, 6, 64, 4, 4, 1024)
    assert beauty["tasks.register_dataset.input_form"] == "codes" and beauty["train_lib.train.pack"] == "first_fit"
    for name, run in runs.items():
        differ = {k for k in run if run[k] != beauty[k]}
        assert differ == ({"%MIXTURE_OR_TASK_NAME", "%MODEL_DIR", "tasks.register_dataset.name"}
                          if name != "beauty" else set()), (name, differ)
        assert run["%MIXTURE_OR_TASK_NAME"] == f"{name}_retrieval"


@pytest.mark.parametrize("name", ["beauty", "sports", "toys"])
def test_the_cpu_variant_is_tigers_configuration_with_an_annealing_schedule(fresh_gin, name):
    """gin/baselines/tiger_<dataset>_cpu.gin: tiger_<dataset>.gin's bindings but the schedule
    (warm-up, cosine to 0 over its 2,000 steps) and its own MODEL_DIR."""
    tiger = _bindings(name)
    gin.clear_config()
    gin_utils.parse_gin([str(REPO_ROOT / f"gin/baselines/tiger_{name}_cpu.gin")], ["DATA_DIR = 'unused'"])
    cpu = {k: gin.query_parameter(k) for k in tiger}
    assert {k for k in tiger if cpu[k] != tiger[k]} == {"%MODEL_DIR"}
    assert gin.query_parameter("%MODEL_DIR") == f"runs/tiger/{name}_cpu"
    assert gin.query_parameter("%TRAIN_STEPS") == 2000
    assert gin.query_parameter("optimizers.warmup_cosine_schedule.peak") == 0.01
    schedule = gin.query_parameter("optimizers.adafactor.learning_rate")
    assert "warmup_cosine_schedule" in str(schedule)


@pytest.mark.slow
def test_tiger_trains_on_semantic_ids_with_a_code_vocabulary_and_decodes_catalog_items(semantic_catalog, tmp_path,
                                                                                          fresh_gin):
    model_dir = tmp_path / "tiger"
    gin_utils.parse_gin([str(REPO_ROOT / "gin/baselines/tiger_beauty.gin")], [
        f"DATA_DIR = '{semantic_catalog}'", f"MODEL_DIR = '{model_dir}'", "TRAIN_STEPS = 4", "BATCH_SIZE = 8",
        "EVAL_PERIOD = 2", "VALIDATION_EXAMPLES = 32", "train_lib.train.log_period = 1",
        "train_lib.train.progress = False", "train_lib.train.async_checkpointing = False",
        "recjax.evaluation.EvalOptions.batch_size = 16", "tasks.register_dataset.num_negatives = 9"])
    assert T5Config().vocab_size == 128  # the codes of 3 levels of 4 + collisions, sentinels, specials
    train_lib.train()
    rows = [json.loads(line) for line in open(model_dir / "metrics.jsonl")]
    evaluations = [r for r in rows if "beauty_retrieval/valid_id_rate" in r]
    assert [r["step"] for r in evaluations] == [2, 4]
    assert all(r["beauty_retrieval/valid_id_rate"] == 1.0 for r in evaluations)  # constrained: catalog items only
    assert (model_dir / "best" / "best.json").is_file()


def test_user_tokens_are_the_users_alone_and_never_see_a_held_out_item(semantic_catalog):
    """USER_TOKENS (TIGER's hashed users): every retrieval input of a user, in every split, starts
    with the same token; replacing every user's validation and test items changes no token; the
    vocabulary holds the tokens (no <unk>) and items.vocab_size counts them; off, no token."""
    import dataclasses

    import numpy as np

    import tasks
    from recjax.items.vocabulary import vocab_size
    from tasks.examples import ExampleBuilder

    vocab = tasks.code_vocabulary(data_dir=semantic_catalog)
    registered = tasks.register_dataset(semantic_catalog, "tigerusers", vocab, input_form="codes", item_text=False,
                                        user_tokens=16, num_negatives=9)
    builder, tok = registered.builder, registered.tokenizer
    users = range(builder.num_users)
    first = {split: [row["inputs"].split()[0] for u in users for row in builder.user_examples("retrieval", split, u, 0, 0)
                     if row["user"] == u] for split in ("validation", "test")}
    train = {u: {row["inputs"].split()[0] for row in builder.user_examples("retrieval", "train", u, 0, 0)} for u in users}
    assert first["validation"] == first["test"] == [builder.user_token(u) for u in users]
    assert all(train[u] == {builder.user_token(u)} for u in users if train[u])
    assert all(t.startswith("<u_") for t in first["test"]) and 4 < len(set(first["test"])) <= 16
    rng = np.random.default_rng(0)
    swapped = []
    for seq in builder.dataset.sequences:
        seq = seq.copy()
        seq[-2:] = rng.choice(np.setdiff1d(np.arange(builder.num_items), seq), size=2, replace=False)
        swapped.append(seq)
    other = ExampleBuilder(dataclasses.replace(builder.dataset, sequences=swapped), builder.options)
    assert [other.user_token(u) for u in users] == [builder.user_token(u) for u in users]
    row = builder.user_examples("retrieval", "test", 0, 0, 0)[0]
    assert tok.unk_id() not in tok.encode(row["inputs"]) and len(tok.encode(row["inputs"].split()[0])) == 1
    assert registered.vocab_size <= vocab_size(semantic_catalog, vocab, user_tokens=16)
    plain = tasks.register_dataset(semantic_catalog, "tigernousers", vocab, input_form="codes", item_text=False,
                                   num_negatives=9)
    assert not plain.builder.user_examples("retrieval", "test", 0, 0, 0)[0]["inputs"].startswith("<u_")
    with pytest.raises(ValueError, match="user_tokens needs input_form='codes'"):
        tasks.register_dataset(semantic_catalog, "tigerwords", vocab, item_text=False, user_tokens=16, num_negatives=9)
