"""Gin flags: a misspelled macro fails before any work instead of being silently ignored."""
import subprocess
import sys

import gin
import pytest

from recjax import gin_utils


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def test_unknown_macro_binding_is_refused_with_the_closest_name():
    import recjax.train_lib  # noqa: F401  (registers the configurables the file binds)

    with pytest.raises(gin_utils.GinFlagError, match=r"--gin.TRAIN_STEP: no Gin file uses the macro %TRAIN_STEP, "
                                                      r"so it would change nothing; did you mean TRAIN_STEPS"):
        gin_utils.parse_gin(["experiments/quickstart.gin"], ["TRAIN_STEP = 20"])
    gin.clear_config()
    with pytest.raises(gin_utils.GinFlagError, match="--gin.NOT_A_MACRO: no Gin file uses"):
        gin_utils.parse_gin(["experiments/quickstart.gin"], ["NOT_A_MACRO = 3"])
    gin.clear_config()
    gin_utils.parse_gin(["experiments/quickstart.gin"], ["TRAIN_STEPS = 20", "train_lib.train.log_period = 5"])
    assert gin.query_parameter("%TRAIN_STEPS") == 20


def test_recjax_train_refuses_a_misspelled_macro_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "recjax.cli", "train", "--gin_file=gin/experiments/quickstart.gin",
                           "--gin.TRAIN_STEP=20", f"--gin.MODEL_DIR='{tmp_path / 'run'}'"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "--gin.TRAIN_STEP: no Gin file uses the macro" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "run").exists()


def _header_example(path="gin/runs/finetune.gin") -> list[str]:
    """The `recjax train ...` example in a Gin file's header comment, as argv."""
    import shlex

    lines, started = [], False
    for line in open(path):
        text = line.lstrip("#").strip()
        if text.startswith("recjax train"):
            started = True
        if started:
            lines.append(text.rstrip("\\").strip())
            if not text.endswith("\\"):
                break
    return shlex.split(" ".join(lines))[1:]


@pytest.mark.slow
def test_the_finetune_header_example_trains(shared_data, tmp_path):
    """The model + run + task combination finetune.gin's header shows works as written (here with
    the tiny model, 1 step, Beauty prepared into a temporary directory)."""
    from recjax.cli import prepare

    data = tmp_path / "beauty"
    assert prepare.main(["--format", "p5", "--src", str(shared_data / "beauty"), "--out", str(data), "--no-tfds"]) == 0
    argv = _header_example()
    assert argv[:2] == ["train", "--gin_file=gin/models/t5_1_1_base.gin"] and "--gin_file=gin/tasks/beauty.gin" in argv
    argv = [a.replace("t5_1_1_base", "t5_1_1_tiny").replace("TRAIN_STEPS=20000", "TRAIN_STEPS=1")
            .replace("'runs/beauty'", f"'{tmp_path / 'run'}'") for a in argv]
    argv += [f"--gin.DATA_DIR='{data}'", "--gin.BATCH_SIZE=8", "--gin.train_lib.train.progress=False"]
    proc = subprocess.run([sys.executable, "-m", "recjax.cli", *argv], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "run" / "checkpoints" / "1").is_dir()
    # Without the task file: one line saying what to add, nothing written.
    argv = [a for a in argv if a != "--gin_file=gin/tasks/beauty.gin" and not a.startswith("--gin.DATA_DIR")]
    argv = [a.replace(str(tmp_path / "run"), str(tmp_path / "run2")) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "recjax.cli", *argv], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "recjax train: error: unknown task or mixture 'beauty_rec_aux': no task is registered; include the dataset's "
        "gin/tasks/*.gin file (e.g. --gin_file=gin/tasks/beauty.gin), which registers its tasks"]
    assert not (tmp_path / "run2").exists()


@pytest.mark.parametrize("argv, message", [
    (["--gin.MODEL_DIR"], "error: --gin.MODEL_DIR needs a value, e.g. --gin.MODEL_DIR=VALUE "
                          "(quote strings: --gin.MODEL_DIR=\"'text'\")"),
    (["--gin.MODEL_DIR=runs/z"], "error: --gin.MODEL_DIR=runs/z: a Gin value, not a bare word; quote strings: "
                                 "--gin.MODEL_DIR=\"'runs/z'\""),
])
def test_a_malformed_gin_flag_is_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        gin_utils.split_gin_flags(["--gin_file=x.gin", *argv])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [message]
    # Values Gin reads stay accepted: numbers, quoted strings, references, macros, constants.
    files, bindings, _, _ = gin_utils.split_gin_flags(
        ["--gin.A=3", "--gin.B='x/y'", "--gin.C=@f()", "--gin.D=%E", "--gin.F=None", "--gin.G=(1, 2)"])
    assert bindings == ["A = 3", "B = 'x/y'", "C = @f()", "D = %E", "F = None", "G = (1, 2)"]
