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
