"""benchmarks/device/check.sh --cpu-smoke: every stage of the prepared accelerator check (train
step vs PyTorch, constrained decoding vs transformers' generate, a from-scratch Beauty run and its
evaluation, TIGER's configuration tested at its best checkpoint) with tiny sizes on this CPU, with TensorFlow and SeqIO blocked as on the GPU machine,
writing its JSON and table."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # integration tier: `pytest -m "not slow"` leaves it out

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_cpu_smoke_runs_every_stage(shared_data, t5_vocab_path, tmp_path):
    from recjax.cli import prepare

    from recjax.cli import index

    data, semantic = tmp_path / "beauty", tmp_path / "beauty_semantic"
    assert prepare.main(["--format", "p5", "--src", str(shared_data / "beauty"), "--out", str(data), "--no-tfds"]) == 0
    assert index.main(["--scheme", "semantic_rqkmeans", "--src", str(data), "--out", str(semantic)]) == 0
    env = dict(os.environ, OUT=str(tmp_path / "out"), PYTHON=sys.executable)
    env.pop("XLA_FLAGS", None)  # one CPU device, as the check expects of a one-GPU machine
    proc = subprocess.run(["bash", str(REPO / "benchmarks/device/check.sh"), "--cpu-smoke", "--data_dir", str(data),
                           "--vocab", str(t5_vocab_path), "--tiger_data_dir", str(semantic),
                           "--stages", "train,decode,beauty,tiger"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "check.json").read_text())
    assert report["cpu_smoke"] and set(report) >= {"train", "decode", "beauty", "tiger"}
    [train] = report["train"]
    assert train["recjax_tokens_per_s"] > 0 and train["torch_tokens_per_s"] > 0 and train["model_tflops_per_step"] > 0
    decode = report["decode"]
    assert decode["items"] == 12_101 and decode["recjax_users_per_s"] > 0 and decode["hf_users_per_s"] > 0
    beauty = report["beauty"]
    assert beauty["users"] == 64 and 0.0 <= beauty["ndcg@10"] <= beauty["hit@10"] <= 1.0
    tiger = report["tiger"]  # TIGER's gin: code-only vocabulary, validation, the best checkpoint tested
    assert tiger["gin_file"] == "gin/baselines/tiger_beauty.gin" and tiger["users"] == 64
    assert 1 <= tiger["selected_step"] <= tiger["steps"] and tiger["windows_per_s"] > 0
    assert (tmp_path / "out" / "tiger" / "best" / "best.json").is_file()
    assert 0.0 <= tiger["ndcg@10"] <= tiger["hit@10"] <= 1.0
    table = (tmp_path / "out" / "check.md").read_text()
    assert "| decode (beam 20, constrained) |" in table and "NDCG@10" in table


def test_without_staged_data_the_smoke_says_to_stage_it_in_one_line(tmp_path):
    """A fresh clone has no .device/: --cpu-smoke says to run --stage-data first (one line, exit
    2, before any stage runs) instead of a NotPreparedError traceback."""
    env = dict(os.environ, OUT=str(tmp_path / "out"), PYTHON=sys.executable)
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(["bash", str(REPO / "benchmarks/device/check.sh"), "--cpu-smoke", "--data_dir",
                           str(tmp_path / "nowhere")], capture_output=True, text=True, env=env, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0] == (f"check.sh: error: {tmp_path / 'nowhere'}: no prepared dataset; run "
                        "`bash benchmarks/device/check.sh --stage-data` first (or pass --data_dir and --vocab)")
    assert not (tmp_path / "out").exists()
