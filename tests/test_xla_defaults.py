"""recjax's XLA:CPU defaults: added only where XLA_FLAGS leaves them unset, and accepted by the
installed jaxlib (XLA aborts the process on an unknown flag, so a pin change that drops the flag
fails here)."""
import subprocess
import sys

from recjax import xla_defaults


def test_added_only_when_unset_and_for_measured_jaxlib():
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    assert xla_defaults.apply(env, jaxlib_version="0.10.2") == ["--xla_cpu_experimental_ynn_fusion_type="]
    assert env["XLA_FLAGS"] == "--xla_force_host_platform_device_count=8 --xla_cpu_experimental_ynn_fusion_type="
    user = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=dot"}  # the user's choice wins
    assert xla_defaults.apply(user, jaxlib_version="0.10.2") == [] and user["XLA_FLAGS"].endswith("=dot")
    assert xla_defaults.apply({}, jaxlib_version="0.11.0") == []  # not measured there: nothing set
    off = {"RECJAX_XLA_DEFAULTS": "0"}
    assert xla_defaults.apply(off, jaxlib_version="0.10.2") == [] and "XLA_FLAGS" not in off


def test_installed_jaxlib_accepts_the_defaults():
    """Set for the pinned jaxlib of Python 3.11 (0.10.x, where it was measured) and accepted by it;
    left alone on another jaxlib (0.11.x on Python 3.12), where the program runs as well."""
    code = ("import recjax, os, jax, jax.numpy as jnp; "
            "print('ynn_fusion_type' in os.environ.get('XLA_FLAGS', '')); "
            "print(float((jnp.ones((64, 32)) @ jnp.ones((32, 16))).sum()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"})
    assert out.returncode == 0, out.stderr[-2000:]
    applied, total = out.stdout.strip().splitlines()[-2:]
    assert applied == str(xla_defaults._jaxlib_version().startswith(xla_defaults.MEASURED_JAXLIB))
    assert total == str(64.0 * 16 * 32)
