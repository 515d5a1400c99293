"""Test set-up: 8 fake CPU devices (set before jax is imported) and the shared real data."""
import os
import pathlib

# Emulate a device mesh on the CPU; must happen before anything imports jax.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout (never copied into the repo); RECJAX_SHARED_DATA overrides.
SHARED_DATA = pathlib.Path(os.environ.get("RECJAX_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The real data beside the checkout; tests that need it skip (with the reason) where absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set RECJAX_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def t5_vocab_path(shared_data) -> pathlib.Path:
    path = shared_data / "t5_tokenizer" / "spiece_rebuilt.model"
    if not path.exists():
        pytest.skip(f"T5 SentencePiece vocabulary not found at {path}")
    return path
