#!/usr/bin/env bash
# The prepared device check (issue 14 item 5; the tiger stage: issue 23 item 6), commands of at most 8 minutes on one GPU
# machine (Python 3.12, jax 0.11.2 + CUDA, flax, optax, orbax, transformers, torch, sentencepiece;
# no TensorFlow, no SeqIO, no network). Writes $OUT/check.json and $OUT/check.md (OUT defaults to
# runs/device_check). What travels with the checkout, prepared here first:
#   .whl/     the wheels the image lacks (grain's are binary):  bash benchmarks/device/check.sh --fetch-wheels
#   .device/  the prepared Beauty dataset with collaborative IDs and FLAN-T5's spiece.model:
#             bash benchmarks/device/check.sh --stage-data
# Then, on the machine (the device tool: carry .whl and .device), two calls:
#   bash benchmarks/device/check.sh
#   bash benchmarks/device/check.sh --stages tiger     # TIGER's configuration, ~5 min of training
# and here, every stage with tiny sizes on the CPU in under 2 minutes:
#   bash benchmarks/device/check.sh --cpu-smoke [--data_dir D --vocab V]
set -euo pipefail
cd "$(dirname "$0")/../.."
WHEELS="gin-config==0.5.0 tensorboardX==2.6.4 grain==0.2.18 array-record cloudpickle portpicker"  # grain: the input path
case "${1:-}" in
  --fetch-wheels)  # here, once: the wheels (no dependencies beyond what the image has)
    mkdir -p .whl && python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform any -d .whl $WHEELS
    ls .whl; exit 0;;
  --stage-data)  # here, once: the dataset and vocabulary the check trains and decodes on
    mkdir -p .device
    [ -d data/beauty ] || recjax prepare --format p5 --src ../shared/data/beauty --out data/beauty --no-tfds
    [ -d data/beauty_collaborative ] || recjax index --scheme collaborative --codebook_size 32 --src data/beauty \
      --out data/beauty_collaborative
    rm -rf .device/beauty_collaborative && cp -r data/beauty_collaborative .device/
    [ -d data/beauty_semantic_rqvae ] || recjax index --scheme semantic_rqvae --levels 3 --codebook_size 256 \
      --embeddings text --src data/beauty --out data/beauty_semantic_rqvae
    rm -rf .device/beauty_semantic_rqvae && cp -r data/beauty_semantic_rqvae .device/
    cp ../shared/data/t5_tokenizer/spiece_rebuilt.model .device/spiece.model
    du -sh .device; exit 0;;
esac
PY="${PYTHON:-python3}"  # the Python that holds jax and torch (the image's python3)
if [ -d .whl ] && ls .whl/*.whl > /dev/null 2>&1 && ! "$PY" -c "import gin, tensorboardX, grain" 2> /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
exec "$PY" benchmarks/device/check.py --out "${OUT:-runs/device_check}" "$@"
