"""setup.py's pins resolve for Python 3.11 (jax 0.10.2) and 3.12 (jax 0.11.2), with the cuda and
tpu extras, as pip would install them on a Linux x86-64 host (uv's resolver, which, unlike pip's
--python-version, also reads the sdist-only dependencies). Needs the package registry; skipped
without it."""
import pathlib
import re
import subprocess

import pytest

pytestmark = pytest.mark.slow  # integration tier: `pytest -m "not slow"` leaves it out

REPO = pathlib.Path(__file__).resolve().parent.parent


def _resolve(python: str, extra: str, tmp_path) -> dict[str, str]:
    uv = pytest.importorskip("uv", reason="uv (a test dependency) resolves for other Python versions")
    out = tmp_path / f"lock{python}{extra}.txt"
    proc = subprocess.run([uv.find_uv_bin(), "pip", "compile", "--quiet", "--python-version", python,
                           "--python-platform", "x86_64-manylinux_2_31", str(REPO / "setup.py"), "--extra", extra,
                           "--extra", "test", "-o", str(out)], capture_output=True, text=True, timeout=600)
    if proc.returncode and re.search(r"(?i)(connect|network|dns|timed out|failed to fetch)", proc.stderr):
        pytest.skip(f"package registry unreachable: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr
    pins = {}
    for line in out.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", line)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


@pytest.mark.parametrize("python,jax", [("3.11", "0.10.2"), ("3.12", "0.11.2")])
def test_pins_resolve_with_the_accelerator_extras(python, jax, tmp_path):
    cuda = _resolve(python, "cuda", tmp_path)
    assert cuda["jax"] == cuda["jaxlib"] == cuda["jax-cuda12-plugin"] == jax
    assert cuda["tensorflow"] == "2.21.0" and cuda["seqio"] == "0.0.20" and cuda["flax"] == "0.12.8"
    tpu = _resolve(python, "tpu", tmp_path)
    assert tpu["jax"] == jax and "libtpu" in tpu and "jax-cuda12-plugin" not in tpu


@pytest.mark.parametrize("python", ["3.11", "3.12"])
def test_the_beam_extra_resolves_with_the_pins(python, tmp_path):
    pins = _resolve(python, "beam", tmp_path)
    assert pins["apache-beam"] == "2.78.0" and pins["tensorflow"] == "2.21.0" and pins["grain"] == "0.2.18"
