"""Model selection (#22 item 4): the best checkpoint on validation by a chosen metric, kept in
MODEL_DIR/best beside the latest ones, early stopping after a patience, the same selection after
a resume, `--step best` for the commands, and one line for a selection that cannot be made."""
import json
import os

import gin
import numpy as np
import pytest

from recjax import checkpoints, gin_utils, model_selection, param_tree, train_lib
from recjax.model_selection import Selection

from conftest import REPO_ROOT

KEY = "synthetic_retrieval/ndcg@10"


def test_the_best_is_the_step_a_hand_made_history_says():
    history = {100: 0.010, 200: 0.031, 300: 0.029, 400: 0.031, 500: 0.030}
    selection = Selection("retrieval/ndcg@10", patience=None)
    improved = [selection.update(step, {KEY: v, "synthetic_ranking/ndcg@10": 1.0}) for step, v in history.items()]
    assert improved == [True, True, False, False, False]  # a tie is no improvement: the earlier step stays
    assert (selection.key, selection.best_step, selection.best_value, selection.since_best) == (KEY, 200, 0.031, 3)
    rmse = Selection("rating/rmse", patience=2)
    for step, v in {1: 1.2, 2: 1.0, 3: 1.1, 4: 1.05}.items():
        rmse.update(step, {"ml_rating/rmse": v})
    assert rmse.best_step == 2 and rmse.stopped  # lower is better; two evaluations without improvement


def test_patience_and_restore():
    selection = Selection("retrieval/ndcg@10", patience=2)
    for step, v in {1: 0.1, 2: 0.09, 3: 0.2, 4: 0.19}.items():
        selection.update(step, {KEY: v})
        assert not selection.stopped
    selection.update(5, {KEY: 0.18})
    assert selection.stopped
    again = Selection.restore("retrieval/ndcg@10", 2, json.loads(json.dumps(selection.state())))
    assert again == selection
    with pytest.raises(ValueError, match="best_metric is 'ranking/ndcg@10' but this run selected by 'retrieval/ndcg@10'"):
        Selection.restore("ranking/ndcg@10", 2, selection.state())


def test_metric_names_resolve_or_fail_in_one_line():
    keys = [KEY, "synthetic_retrieval/hit@10", "synthetic_ranking/ndcg@10"]
    assert model_selection.resolve_metric("retrieval/ndcg@10", keys) == KEY
    assert model_selection.resolve_metric("synthetic_ranking/ndcg@10", keys) == "synthetic_ranking/ndcg@10"
    with pytest.raises(ValueError, match="'retrieval/ndgc@10': the evaluation has no such metric; it has"):
        model_selection.resolve_metric("retrieval/ndgc@10", keys)
    with pytest.raises(ValueError, match="names several metrics"):
        model_selection.resolve_metric("ndcg@10", keys)
    with pytest.raises(ValueError, match="no evaluated task is 'rating' or of kind 'rating'"):
        model_selection.check_metric_tasks("rating/rmse", ["synthetic_retrieval", "synthetic_ranking"])
    assert model_selection.auto_metric(["ml_rating"]) == "rating/rmse"
    assert model_selection.auto_metric(["b_ranking", "b_retrieval"]) == "retrieval/ndcg@10"
    with pytest.raises(ValueError, match="patience must be a positive int"):
        Selection("retrieval/ndcg@10", patience=0)


class Scripted:
    """An evaluator whose validation NDCG@10 follows a hand-made history."""

    split = "validation"

    def __init__(self, history):
        self.history = history

    def task_names(self):
        return ["synthetic_retrieval"]

    def __call__(self, *, params, step):
        return {KEY: self.history[step], "synthetic_retrieval/hit@10": 0.5}


def _train(model_dir, data_dir, steps, evaluator, **kwargs):
    gin.clear_config()
    try:
        gin_utils.parse_gin([str(REPO_ROOT / "gin/experiments/quickstart.gin")], [
            f"MODEL_DIR = '{model_dir}'", f"TRAIN_STEPS = {steps}", "BATCH_SIZE = 8",
            "TASK_FEATURE_LENGTHS = {'inputs': 96, 'targets': 16}", f"embedded_synthetic_dataset.out_dir = '{data_dir}'",
            "embedded_synthetic_dataset.num_users = 200", "embedded_synthetic_dataset.num_items = 80",
            "tasks.register_dataset.num_negatives = 19", "tasks.dataset_vocabulary.vocab_size = 500",
            "VOCAB_SIZE = 640", "train_lib.train.checkpoint_period = 2", "train_lib.train.log_period = 1",
            "train_lib.train.progress = False", "train_lib.train.eval_period = 2", "train_lib.train.keep_checkpoints = 5",
            "train_lib.train.async_checkpointing = False", "train_lib.train.loader = 'grain'"])
        return train_lib.train(evaluator=evaluator, **kwargs)
    finally:
        gin.clear_config()


def _params(directory, step):
    with checkpoints.Checkpoint(str(directory)) as ckpt:
        return param_tree.flatten_params(ckpt.restore_params(step)[0]), ckpt.step(step)


@pytest.mark.slow
def test_train_keeps_the_best_checkpoint_stops_after_patience_and_resumes_the_selection(tmp_path, capsys):
    data_dir = tmp_path / "data"
    history = {2: 0.10, 4: 0.30, 6: 0.20, 8: 0.25, 10: 0.1}
    # Four steps, then resumed to ten: the selection goes on from what the checkpoint kept.
    _train(tmp_path / "run", data_dir, 4, Scripted(history), patience=2)
    state = _train(tmp_path / "run", data_dir, 10, Scripted(history), patience=2)
    out = capsys.readouterr().out
    assert int(state.step) == 8  # 6 and 8 did not improve on 4: stopped after the patience of 2
    assert "stopped early at step 8: synthetic_retrieval/ndcg@10 did not improve for 2 evaluations" in out
    assert f"best {KEY} 0.3000 at step 4" in out
    best = json.loads((tmp_path / "run" / "best" / "best.json").read_text())
    assert (best["step"], best["value"], best["history"]) == (4, 0.3, [[2, 0.1], [4, 0.3]])  # what it was chosen over
    best_params, best_step = _params(tmp_path / "run", "best")
    step4, _ = _params(tmp_path / "run", 4)
    assert best_step == 4 and sorted(os.listdir(tmp_path / "run" / "best")) == ["4", "best.json", "item_ids.json",
                                                                                   "model_config.json"]
    for key, value in step4.items():
        np.testing.assert_array_equal(best_params[key], value, err_msg=key)
    assert checkpoints.latest_step(str(tmp_path / "run" / "checkpoints")) == 8  # the stopping step is saved
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert [r["best_step"] for r in rows if r["split"] == "selection"] == [2, 4, 4, 4]

    # Run again: it says it stopped, and trains nothing.
    _train(tmp_path / "run", data_dir, 10, Scripted(history), patience=2)
    assert "stopped early at step 8 of 10" in capsys.readouterr().out

    # export --step best writes the best step's params.
    from recjax.cli import export

    assert export.main(["--checkpoint", str(tmp_path / "run"), "--step", "best", "--format", "params_bf16",
                        "--out", str(tmp_path / "exported")]) == 0
    exported, _ = _params(tmp_path / "exported", None)
    for key, value in step4.items():
        np.testing.assert_array_equal(exported[key], value.astype(exported[key].dtype), err_msg=key)


@pytest.mark.slow
def test_a_selection_that_cannot_be_made_is_one_line_before_work(tmp_path, capsys):
    data_dir = tmp_path / "data"
    with pytest.raises(ValueError, match="no evaluated task is 'rating' or of kind 'rating'"):
        _train(tmp_path / "a", data_dir, 2, Scripted({}), best_metric="rating/rmse")
    with pytest.raises(ValueError, match="patience needs evaluations on validation"):
        _train(tmp_path / "b", data_dir, 2, None, patience=3)
    test_split = Scripted({})
    test_split.split = "test"
    with pytest.raises(ValueError, match="model selection reads 'validation' only"):
        _train(tmp_path / "c", data_dir, 2, test_split, patience=3)
    assert not any((tmp_path / d).exists() for d in "abc")
    _train(tmp_path / "d", data_dir, 2, None)  # no evaluator: no best kept
    from recjax.cli import export

    assert export.main(["--checkpoint", str(tmp_path / "d"), "--step", "best", "--format", "params_bf16",
                        "--out", str(tmp_path / "x")]) != 0
    err = capsys.readouterr().err
    assert "no best checkpoint" in err and len(err.strip().splitlines()) == 1, err
