"""The model side without TensorFlow or SeqIO (#14 item 2): with both blocked at import, the
network, model, trainer, partitioning, decoding, checkpoints, convert, export and plan modules
import, a train step runs on synthetic arrays, a constrained decode returns valid items, a
checkpoint round-trips, and `recjax plan` compiles a Gin config."""
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent

SCRIPT = r'''
import sys
BLOCKED = {"tensorflow", "seqio", "tensorflow_datasets", "tensorflow_text"}
for name in BLOCKED:  # as if not installed: `import` raises ModuleNotFoundError, find_spec gives None
    sys.modules[name] = None

import numpy as np
import jax, jax.numpy as jnp
from recjax import checkpoints, conversion, exporting, memory_plan, network, partitioning  # noqa: F401
from recjax.cli import convert, export, plan  # noqa: F401
from recjax.config import T5Config
from recjax.decoding import DecodeOptions, ItemDecoder
from recjax.items.trie import ItemTrie
from recjax.model import EncoderDecoderModel, LossConfig
from recjax.optimizers import adafactor
from recjax.train_lib import TrainSetup

config = T5Config(vocab_size=64, emb_dim=16, num_heads=2, head_dim=8, num_encoder_layers=1, num_decoder_layers=1,
                  mlp_dim=32)
setup = TrainSetup(config, LossConfig(), adafactor(), 4, {"inputs": 12, "targets": 4}, (1, 1), "data_parallel", 1,
                   False, 0)
trainer = setup.make_trainer(partitioning.Partitioner(partitioning.make_mesh(1, 1)))
rng = np.random.default_rng(0)
targets = rng.integers(2, 64, (4, 4)).astype(np.int32)
batch = {"encoder_input_tokens": rng.integers(2, 64, (4, 12)).astype(np.int32), "decoder_target_tokens": targets,
         "decoder_input_tokens": np.concatenate([np.zeros((4, 1), np.int32), targets[:, :-1]], 1),
         "decoder_loss_weights": np.ones((4, 4), np.float32)}
state = trainer.init_state()
state, metrics = trainer.train_step(state, trainer.shard_batch(batch))
assert np.isfinite(float(metrics["loss"])), metrics

items = [[5, 6, 1], [5, 7, 1], [8, 1], [9, 10, 1]]
trie = ItemTrie.from_token_sequences(items, config.vocab_size)
decoder = ItemDecoder(EncoderDecoderModel(config), trie, DecodeOptions(beam_size=4, top_k=3))
params = jax.device_get(state.params)
out = decoder(params, batch["encoder_input_tokens"][:2], decoder.exclusion([[0], []], width=2))
assert (out.items[0] != 0).all() and set(out.items[0]) <= {1, 2, 3} and set(out.items[1]) <= {0, 1, 2, 3}

checkpoints.save_params(sys.argv[1], params, config)
restored, _ = checkpoints.restore_params(sys.argv[1])
assert all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(params)))
rc = plan.main(["--gin_file=gin/models/t5_1_1_tiny.gin", "--gin_file=gin/runs/finetune.gin",
                "--gin.MODEL_DIR='unused'", "--gin.MIXTURE_OR_TASK_NAME='unused'", "--gin.TRAIN_STEPS=1",
                "--mesh", "data=1,model=1", "--batch_size", "4", "--json"])
assert rc == 0
assert all(sys.modules.get(name) is None for name in BLOCKED)
print("TF-FREE OK")
'''


@pytest.mark.slow
def test_model_side_runs_without_tensorflow_or_seqio(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "ckpt")], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "TF-FREE OK" in result.stdout, result.stderr[-3000:]
