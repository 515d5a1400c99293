"""gin/experiments: the 30 generated experiment files are current, all parse into the intended
run, and `recjax plan` accepts them (two representative files planned with the model shrunk)."""
import importlib.util
import json
import os

import gin
import pytest

from recjax import gin_utils, memory_plan
from recjax.cli import plan
from tasks.registry import mixture_suffixes

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS_DIR = os.path.join(REPO_ROOT, "gin", "experiments")
DATASETS = ("beauty", "sports", "toys")
SIZES = {"base": 768, "xl": 2048}  # emb_dim of FLAN-T5-Base / XL
MIXTURES = ("rec", "rec_aux", "rec_mim", "rec_mlm", "rec_bpr")
NAMES = [f"{d}_{s}_{m}" for d in DATASETS for s in SIZES for m in MIXTURES]
DUMMY_CHECKPOINT = "INITIAL_CHECKPOINT_PATH = '/nonexistent/flan_t5'"


def _generator():
    spec = importlib.util.spec_from_file_location("generate", os.path.join(EXPERIMENTS_DIR, "generate.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_files_are_what_generate_py_writes():
    generate = _generator()
    expected = generate.outputs()
    assert sorted(expected) == sorted([f"{n}.gin" for n in NAMES] + ["README.md"])
    for name, text in expected.items():
        with open(os.path.join(EXPERIMENTS_DIR, name), encoding="utf-8") as f:
            assert f.read() == text, f"{name} is stale: run python gin/experiments/generate.py"
    assert generate.stale_generated(expected) == []
    for name in NAMES:  # the README's table lists every file
        assert f"`gin/experiments/{name}.gin`" in expected["README.md"]


@pytest.fixture
def fresh_gin():
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.mark.parametrize("name", NAMES)
def test_experiment_parses_into_its_run(name, fresh_gin):
    dataset, size, mixture = name.split("_", 2)
    gin_utils.parse_gin([f"gin/experiments/{name}.gin"], [DUMMY_CHECKPOINT])
    setup = memory_plan.read_train_setup()  # every train_lib.train argument the step needs resolves
    assert setup.model_config.emb_dim == SIZES[size]
    assert setup.model_config.dtype == "bfloat16"
    assert setup.sharding_strategy == ("fsdp" if size == "xl" else "data_parallel")
    assert setup.batch_size == 128 and setup.task_feature_lengths == {"inputs": 512, "targets": 32}
    assert gin_utils.bound_argument("train_lib.train", "mixture_or_task_name") == f"{dataset}_{mixture}"
    assert mixture in mixture_suffixes()  # a mixture tasks.register_dataset registers
    assert gin_utils.bound_argument("train_lib.train", "model_dir") == f"runs/{name}"
    assert gin_utils.bound_argument("train_lib.train", "initial_checkpoint_path") == "/nonexistent/flan_t5"
    # The dataset's tasks are registered by the run (not evaluated here: that reads the data).
    setup_ref = gin.query_parameter("train_lib.train.task_setup")
    assert setup_ref.selector == "tasks.register_dataset"
    assert gin.query_parameter("tasks.register_dataset.name") == dataset
    assert gin.query_parameter("%DATA_DIR") == f"data/{dataset}"


def test_initial_checkpoint_is_required(fresh_gin):
    gin_utils.parse_gin(["gin/experiments/toys_base_rec.gin"], [])
    with pytest.raises(gin_utils.GinFlagError, match="initial_checkpoint_path is %gin.REQUIRED"):
        gin_utils.bound_argument("train_lib.train", "initial_checkpoint_path")


# The model shrunk (layers, widths, vocabulary) and a small batch: what is checked is that the
# experiment's own settings (strategy, dtype, microbatches, optimizer, loss) compile on a mesh.
SHRINK = ["--gin.T5Config.num_encoder_layers=1", "--gin.T5Config.num_decoder_layers=1", "--gin.T5Config.emb_dim=32",
          "--gin.T5Config.num_heads=4", "--gin.T5Config.head_dim=8", "--gin.T5Config.mlp_dim=64",
          "--gin.VOCAB_SIZE=256", "--gin.TASK_FEATURE_LENGTHS={'inputs': 32, 'targets': 8}", "--batch_size", "8"]


@pytest.mark.parametrize("name, mesh_flag, mesh", [
    ("beauty_base_rec_aux", ["--mesh", "data=2,model=1"], {"data": 2, "model": 1, "devices": 2}),
    ("toys_xl_rec_mlm", [], {"data": 8, "model": 1, "devices": 8}),  # the file's MESH_SHAPE (-1, 1), 8 devices
])
@pytest.mark.slow
def test_plan_accepts_experiment(name, mesh_flag, mesh, capsys, fresh_gin):
    capsys.readouterr()
    rc = plan.main([f"--gin_file=gin/experiments/{name}.gin", f"--gin.{DUMMY_CHECKPOINT.replace(' ', '')}",
                    *SHRINK, *mesh_flag, "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    result = json.loads(out)
    assert result["mesh"] == mesh
    assert result["dtype"] == "bfloat16"
    total = 4 * result["num_params"]
    if "_xl_" in name:
        assert result["sharding_strategy"] == "fsdp"
        assert result["per_device_bytes"]["params"] < total / 4  # sharded over the 8 devices
    else:
        assert result["sharding_strategy"] == "data_parallel"
        assert result["per_device_bytes"]["params"] == total  # replicated


def _repro_run(name):
    gin.clear_config()
    gin_utils.parse_gin([f"gin/repro/{name}.gin"], [])
    setup = memory_plan.read_train_setup()
    return setup, {key: gin_utils.bound_argument("train_lib.train", key)
                   for key in ("mixture_or_task_name", "model_dir", "train_steps")}, \
        {"num_negatives": gin.query_parameter("tasks.register_dataset.num_negatives"),
         "max_history": gin.query_parameter("%MAX_HISTORY"), "lr": gin.query_parameter("%LEARNING_RATE")}


def test_repro_runs_differ_only_in_the_mixture(fresh_gin):
    """gin/repro: the paper's claim is tested at equal model, steps, batch, lengths and data options."""
    rec, rec_args, rec_data = _repro_run("beauty_cpu_rec")
    aux, aux_args, aux_data = _repro_run("beauty_cpu_rec_aux")
    assert rec_args == {"mixture_or_task_name": "beauty_rec", "model_dir": "runs/repro/beauty_cpu_rec",
                        "train_steps": aux_args["train_steps"]}
    assert aux_args == {"mixture_or_task_name": "beauty_rec_aux", "model_dir": "runs/repro/beauty_cpu_rec_aux",
                        "train_steps": rec_args["train_steps"]}
    assert rec.model_config == aux.model_config and rec.model_config.emb_dim == 256
    for field in ("batch_size", "task_feature_lengths", "sharding_strategy", "num_microbatches", "seed"):
        assert getattr(rec, field) == getattr(aux, field), field
    assert rec_data == aux_data == {"num_negatives": 19, "max_history": 10, "lr": 0.01}
    ml, ml_args, _ = _repro_run("ml100k_cpu_rating")
    assert ml_args["mixture_or_task_name"] == "ml100k_rating" and ml.model_config == rec.model_config


def test_includes_resolve_with_a_runs_folder_on_sys_path(tmp_path, monkeypatch, fresh_gin):
    """A `runs/` output folder in the working directory (on sys.path as '') made gin's package
    reader raise TypeError on include 'runs/finetune.gin'; parsing must not care."""
    import importlib

    (tmp_path / "runs" / "beauty_base_rec").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    gin_utils.parse_gin(["gin/experiments/beauty_base_rec.gin"], [DUMMY_CHECKPOINT])
    assert gin_utils.bound_argument("train_lib.train", "mixture_or_task_name") == "beauty_rec"


def test_identifier_runs_differ_only_in_the_dataset_and_its_vocabulary(fresh_gin):
    """gin/repro/ids: the four schemes are compared at the same model shape, steps, batch, lengths,
    mixture, task options and schedule; only DATA_DIR, VOCAB_SIZE and MODEL_DIR change. The
    recipe is the collaborative run."""
    runs = {}
    for scheme in ("random", "collaborative", "semantic_rqkmeans", "semantic_rqvae", "../beauty_t5_recipe"):
        setup, args, data = _repro_run(f"ids/{scheme}")
        data.update(item_text=gin.query_parameter("tasks.register_dataset.item_text"),
                    data_dir=gin.query_parameter("%DATA_DIR"),
                    warmup=gin.query_parameter("optimizers.warmup_cosine_schedule.warmup_steps"))
        runs[scheme] = (setup, args, data)
    base_setup, base_args, base_data = runs["random"]
    assert base_args["mixture_or_task_name"] == "beauty_rec" and base_data["item_text"] is False
    for scheme, (setup, args, data) in runs.items():
        assert setup.model_config.replace(vocab_size=1) == base_setup.model_config.replace(vocab_size=1), scheme
        assert setup.model_config.vocab_size % 128 == 0
        for field in ("batch_size", "task_feature_lengths", "sharding_strategy", "num_microbatches", "seed"):
            assert getattr(setup, field) == getattr(base_setup, field), (scheme, field)
        assert args["train_steps"] == base_args["train_steps"] == 1200
        assert {k: v for k, v in data.items() if k != "data_dir"} == {k: v for k, v in base_data.items() if k != "data_dir"}
    assert runs["../beauty_t5_recipe"][2]["data_dir"] == runs["collaborative"][2]["data_dir"] == "data/beauty_collaborative"
    assert runs["semantic_rqvae"][1]["model_dir"] == "runs/ids/semantic_rqvae"


@pytest.mark.parametrize("form", ("recipe", "compact"))
def test_the_recipe_ships_for_every_dataset_unchanged_but_for_the_data(form, fresh_gin):
    """gin/repro/{beauty,sports,toys}_t5_{recipe,compact}.gin (#23 item 3): the same model, steps,
    batch, lengths, task options, schedule, loader and packing; only the dataset's names, its
    DATA_DIR (balanced collaborative IDs off Beauty) and MODEL_DIR change."""
    runs = {}
    for dataset in DATASETS:
        gin.clear_config()
        gin_utils.parse_gin([f"gin/repro/{dataset}_t5_{form}.gin"], ["VOCAB_SIZE = 384"])  # no data needed
        setup = memory_plan.read_train_setup()
        args = {key: gin_utils.bound_argument("train_lib.train", key)
                for key in ("mixture_or_task_name", "model_dir", "train_steps", "loader", "pack", "eval_period")}
        options = {key: gin.query_parameter(f"tasks.register_dataset.{key}")
                   for key in ("item_text", "num_negatives", "ranking_max_history", "max_history")}
        options.update(input_form=gin_utils.bound_argument("tasks.register_dataset", "input_form"),
                       warmup=gin.query_parameter("optimizers.warmup_cosine_schedule.warmup_steps"),
                       peak=gin.query_parameter("optimizers.warmup_cosine_schedule.peak"),
                       name=gin.query_parameter("tasks.register_dataset.name"), data_dir=gin.query_parameter("%DATA_DIR"))
        runs[dataset] = (setup, args, options)
    base_setup, base_args, base_options = runs["beauty"]
    suffix = "rec" if form == "recipe" else "retrieval"
    for dataset, (setup, args, options) in runs.items():
        for field in ("model_config", "loss_config", "batch_size", "task_feature_lengths", "mesh_shape",
                      "sharding_strategy", "num_microbatches", "pack", "seed"):
            assert getattr(setup, field) == getattr(base_setup, field), (dataset, field)
        assert args == dict(base_args, mixture_or_task_name=f"{dataset}_{suffix}", model_dir=f"runs/repro/{dataset}_t5_{form}")
        assert options == dict(base_options, name=dataset, data_dir=options["data_dir"]), dataset
        assert options["data_dir"] == ("data/beauty_collaborative" if dataset == "beauty"
                                       else f"data/{dataset}_collaborative_balanced")
    assert base_setup.model_config.emb_dim == 128 and base_args["train_steps"] == (1200 if form == "recipe" else 2500)
    assert base_options["input_form"] == ("codes" if form == "compact" else None)


def test_the_claim_at_convergence_differs_only_in_the_mixture_and_the_controls_steps(fresh_gin):
    """gin/repro/claim (#23 item 5): rec, rec + aux and the equal-retrieval control share the model,
    codes form, vocabulary, packing, batch and schedule shape; aux differs in its mixture, the
    control also in its steps (1.31x: what equal retrieval windows take, measured in the next test)."""
    runs = {}
    for name in ("rec", "rec_aux", "rec_aux_equal_retrieval", "rec_mim", "rec_mlm", "rec_bpr"):
        gin.clear_config()
        gin_utils.parse_gin([f"gin/repro/claim/{name}.gin"], ["VOCAB_SIZE = 384"])
        setup = memory_plan.read_train_setup()
        runs[name] = (setup, {key: gin_utils.bound_argument("train_lib.train", key)
                              for key in ("mixture_or_task_name", "train_steps", "pack", "loader", "eval_period")},
                      gin_utils.bound_argument("tasks.register_dataset", "input_form"),
                      gin.query_parameter("%DATA_DIR"))
    rec, aux, control = runs["rec"], runs["rec_aux"], runs["rec_aux_equal_retrieval"]
    for other in (aux, control, runs["rec_mim"], runs["rec_mlm"], runs["rec_bpr"]):
        for field in ("model_config", "batch_size", "task_feature_lengths", "pack", "seed"):
            assert getattr(other[0], field) == getattr(rec[0], field), field
        assert other[2:] == rec[2:] == ("codes", "data/beauty_collaborative")
    assert rec[1] == {"mixture_or_task_name": "beauty_rec", "train_steps": 4000, "pack": "first_fit", "loader": "grain",
                      "eval_period": 250}
    assert aux[1] == dict(rec[1], mixture_or_task_name="beauty_rec_aux")
    assert control[1] == dict(aux[1], train_steps=5250)
    for kind in ("mim", "mlm", "bpr"):  # each auxiliary task alone, at rec's steps
        assert runs[f"rec_{kind}"][1] == dict(rec[1], mixture_or_task_name=f"beauty_rec_{kind}")


def _retrieval_windows_a_row(name: str, gin_file: str, data_dir: str, batches: int = 60) -> float:
    """Retrieval segments a packed training row holds, from the Grain loader as `recjax train`
    reads it: every other task of the codes form starts with its marker sentinel."""
    import itertools

    import numpy as np

    import tasks
    from recjax import grain_loader
    from tasks.templates import CODE_MARKERS

    gin.clear_config()
    gin_utils.parse_gin([gin_file], [f"DATA_DIR = '{data_dir}'"])
    registered = tasks.register_dataset()
    markers = [registered.tokenizer.piece_to_id(f"\u2581{m}") for m in CODE_MARKERS.values()]
    assert registered.tokenizer.unk_id() not in markers
    lengths = gin.query_parameter("%TASK_FEATURE_LENGTHS")
    rows = grain_loader.batches(name, lengths, split="train", batch_size=gin.query_parameter("%BATCH_SIZE"),
                                shuffle=True, seed=0, pack="first_fit", num_epochs=None)
    retrieval = total = 0
    for batch in itertools.islice(iter(rows), batches):
        starts = (batch["encoder_positions"] == 0) & (batch["encoder_segment_ids"] > 0)  # [rows, length]
        first = batch["encoder_input_tokens"][starts]  # [segments] each example's first token
        retrieval += int((~np.isin(first, markers)).sum())
        total += len(batch["encoder_input_tokens"])
    return retrieval / total


@pytest.mark.slow
def test_the_control_sees_as_many_retrieval_windows_as_rec_on_real_beauty(shared_data, tmp_path, fresh_gin):
    """The control's steps (rec_aux_equal_retrieval.gin) are what rec's retrieval windows take rec_aux
    on Beauty's real training stream (collaborative IDs, first-fit rows of 168/40): rec's rows hold
    ~0.98 retrieval windows (its ranking examples, 20 candidates' codes, nearly fill a row), rec_aux's
    ~0.74; within 3%."""
    from recjax.cli import prepare
    from recjax.items.reindex import reindex
    from recjax.items.schemes import IndexOptions

    source, data_dir = tmp_path / "beauty", str(tmp_path / "beauty_collaborative")
    assert prepare.main(["--format", "p5", "--src", str(shared_data / "beauty"), "--out", str(source), "--no-tfds"]) == 0
    reindex(str(source), data_dir, IndexOptions(scheme="collaborative", codebook_size=32), log=lambda s: None)
    claim = os.path.join(REPO_ROOT, "gin", "repro", "claim")
    rec = _retrieval_windows_a_row("beauty_rec", os.path.join(claim, "rec.gin"), data_dir)
    aux = _retrieval_windows_a_row("beauty_rec_aux", os.path.join(claim, "rec_aux.gin"), data_dir)
    steps = {}
    for name in ("rec", "rec_aux_equal_retrieval"):
        gin.clear_config()
        gin_utils.parse_gin([os.path.join(claim, f"{name}.gin")], ["VOCAB_SIZE = 384"])
        steps[name] = gin.query_parameter("%TRAIN_STEPS")
    assert 0.9 < rec < 1.05 and 0.7 < aux < 0.8, (rec, aux)
    assert steps["rec_aux_equal_retrieval"] * aux == pytest.approx(steps["rec"] * rec, rel=0.03), (rec, aux)
