"""XLA:CPU settings recjax applies before JAX starts a backend, each only where XLA_FLAGS leaves
it unset; RECJAX_XLA_DEFAULTS=0 turns them all off.

- `--xla_cpu_experimental_ynn_fusion_type=` (empty: no YNNPACK dot fusions): jaxlib 0.10.2's
  default routes float32 dots through YNNPACK, which on this project's AVX-512 CPU reaches 73
  GFLOP/s on a [8192, 256] x [256, 1024] matmul against 111 GFLOP/s for XLA's own dot (and
  PyTorch's 114): 13% of a T5 train step (benchmarks/RESULTS.md). The flag name is jaxlib's, so
  it is set only for the jaxlib minor versions it was measured on (XLA aborts on unknown flags).
  Only CPU compilations read xla_cpu_* flags; TPU and GPU runs are unaffected.
"""
from __future__ import annotations

import os
from importlib import metadata
from typing import MutableMapping

MEASURED_JAXLIB = ("0.10.",)
CPU_DEFAULTS = {"--xla_cpu_experimental_ynn_fusion_type": ""}


def _jaxlib_version() -> str:
    try:
        return metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return ""


def apply(environ: MutableMapping[str, str] = os.environ, jaxlib_version: str | None = None) -> list[str]:
    """Appends the defaults missing from environ["XLA_FLAGS"]; returns the flags added."""
    if environ.get("RECJAX_XLA_DEFAULTS", "1") == "0":
        return []
    version = _jaxlib_version() if jaxlib_version is None else jaxlib_version
    if not version.startswith(MEASURED_JAXLIB):
        return []
    flags = environ.get("XLA_FLAGS", "")
    added = [f"{name}={value}" for name, value in CPU_DEFAULTS.items() if name not in flags]
    if added:
        environ["XLA_FLAGS"] = " ".join([flags.strip()] + added).strip()
    return added
