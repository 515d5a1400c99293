"""How recjax imports TensorFlow (the input pipeline's library): without accelerators, quietly.

1. TensorFlow never sees a GPU or TPU: right after its import, before any TF op, its GPU and TPU
   devices are hidden (`hide_accelerators`), on every process; otherwise TF claims the GPU's
   memory before JAX does (T5X hides them for this reason). JAX is unaffected.
2. Its start-up log lines are hidden unless `recjax --verbose`: importing TensorFlow writes lines
   a newcomer reads as failure ("WARNING: All log messages before absl::InitializeLog() ...",
   "I0000 ... oneDNN custom operations are on", "Could not find cuda drivers", "failed call to
   cuInit") from C++ before its logging can be configured, so TF_CPP_MIN_LOG_LEVEL cannot hide
   them. What the import writes to file descriptor 2 is captured and replayed without those lines;
   everything else, and any error, still reaches stderr.

`install()` wraps the first import of `tensorflow` wherever it happens (seqio, tfds, the input
pipeline); `hide_accelerators()` is also called by the input pipeline itself, for library use.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} .*"  # absl INFO / WARNING lines of TF's C++ start-up
    r"|E\d{4} .*(Unable to register|cuInit|cuda drivers|CUDA driver).*)\s*$")


def is_noise(line: str) -> bool:
    return bool(_NOISE.match(line))


@contextlib.contextmanager
def filtered_stderr():
    """Captures file descriptor 2 for the duration and replays it without the noise lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode("utf-8", errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not is_noise(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def hide_accelerators(tf=None) -> None:
    """Hide GPUs and TPUs from TensorFlow (idempotent; a no-op once TF's runtime has started)."""
    if tf is None:
        import tensorflow as tf
    for kind in ("GPU", "TPU"):
        try:
            if tf.config.get_visible_devices(kind):
                tf.config.set_visible_devices([], kind)
        except RuntimeError:  # the runtime is initialized: too late, and TF already chose
            pass


class _Loader(importlib.abc.Loader):
    def __init__(self, loader, quiet: bool):
        self._loader, self._quiet = loader, quiet

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        with filtered_stderr() if self._quiet else contextlib.nullcontext():
            self._loader.exec_module(module)
            hide_accelerators(module)  # device enumeration logs too (cuInit): inside the filter

    def __getattr__(self, name):  # resource readers etc. of the real loader
        return getattr(self._loader, name)


class _TensorFlowFinder(importlib.abc.MetaPathFinder):
    def __init__(self, quiet: bool):
        self.quiet = quiet

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once; the real finders resolve the spec
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader, self.quiet)
        return spec


def install(quiet: bool = True) -> None:
    """Wrap this process's first import of TensorFlow (no-op once TF is imported)."""
    if quiet:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ INFO/WARNING after start-up
    if "tensorflow" in sys.modules or any(isinstance(f, _TensorFlowFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _TensorFlowFinder(quiet))
