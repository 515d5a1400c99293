"""SeqIO tasks on the real Amazon Beauty data (../shared/data) with FLAN-T5's vocabulary."""
import collections
import re

import numpy as np
import pytest
import seqio

import tasks
from tasks import kinds, templates
from task_checks import check_no_leakage  # tests/task_checks.py

pytestmark = pytest.mark.slow  # integration tier: `pytest -m "not slow"` leaves it out

LENGTHS = {"inputs": 512, "targets": 32}
RATES = {"ranking": 2.0, "mlm": 0.5}


@pytest.fixture(scope="module")
def beauty(shared_data, t5_vocab_path, tmp_path_factory):
    from recjax.cli import prepare

    out = tmp_path_factory.mktemp("beauty") / "beauty"
    assert prepare.main(["--format", "p5", "--src", str(shared_data / "beauty"), "--out", str(out),
                         "--no-tfds"]) == 0
    # A small shuffle buffer keeps the tests quick (the source already shuffles users and examples).
    return tasks.register_dataset(str(out), "beauty", str(t5_vocab_path), mixture_rates=RATES,
                                  shuffle_buffer_size=200)


def test_beauty_has_no_rating_task_and_packs_to_feature_lengths(beauty):
    assert set(beauty.tasks) == {"retrieval", "ranking", "mim", "mlm", "bpr"}  # P5 files: no ratings
    assert beauty.builder.num_examples("retrieval", "train") == 198_502 - 3 * 22_363
    assert beauty.builder.num_examples("ranking", "test") == 22_363
    ds = seqio.get_dataset("beauty_rec_aux", task_feature_lengths=LENGTHS, dataset_split="train",
                           shuffle=True, seed=0, num_epochs=None,
                           feature_converter=seqio.EncDecFeatureConverter(pack=True))
    batch = next(ds.batch(8, drop_remainder=True).as_numpy_iterator())
    for key, value in batch.items():
        assert value.shape == (8, LENGTHS["inputs"] if key.startswith("encoder") else LENGTHS["targets"]), key
    assert batch["encoder_input_tokens"].max() < beauty.vocabulary.vocab_size == 32_100
    assert batch["decoder_segment_ids"].max() > 1  # several short examples per packed row


def test_mixture_is_deterministic_and_follows_the_rates(beauty):
    def sample(n):
        ds = seqio.get_mixture_or_task("beauty_rec_aux").get_dataset(
            LENGTHS, split="train", shuffle=True, seed=9, num_epochs=None, passthrough_features=["task"])
        return [(ex["task"].decode(), tuple(ex["inputs"])) for _, ex in zip(range(n), ds.as_numpy_iterator())]

    n = 1500
    first = sample(n)
    assert first == sample(n)
    counts = collections.Counter(kind for kind, _ in first)
    rates = {k: RATES.get(k, 1.0) for k in beauty.tasks}
    total = sum(rates.values())
    for kind, rate in rates.items():
        p = rate / total
        assert abs(counts[kind] / n - p) < 4 * np.sqrt(p * (1 - p) / n), (kind, counts[kind] / n, p)


def test_no_validation_or_test_item_in_training_samples_of_beauty(beauty):
    users = np.random.default_rng(0).choice(beauty.builder.num_users, size=1500, replace=False)
    assert check_no_leakage(beauty.builder, users.tolist()) > 10_000


def test_ranking_candidates_and_targets_are_valid_ids(beauty):
    builder = beauty.builder
    valid = set(builder.item_ids)
    users = np.random.default_rng(1).choice(builder.num_users, size=300, replace=False).tolist()
    for split in ("train", "validation", "test"):
        for user in users:
            touched = {builder.item_ids[i] for i in builder.full[user]}
            rows = builder.user_examples("ranking", split, user, epoch=0, seed=0)
            for row in rows:
                candidates = row["candidate_ids"].split()
                assert len(candidates) == 100 and len(set(candidates)) == 100 and set(candidates) <= valid
                assert set(candidates) & touched == {row["target_id"]} == {row["targets"]}
                shown = re.search(r"[Cc]andidate.*?: ((?:\d+, )+\d+)", row["inputs"]).group(1)
                assert shown.split(", ") == candidates  # the model sees them in this order
            for kind in ("retrieval", "mim", "bpr"):
                for row in builder.user_examples(kind, split, user, epoch=0, seed=0):
                    ids = row["targets"].split(", ") if kind == "mim" else [row["targets"]]
                    assert set(ids) <= valid, (kind, split, row["targets"])
    # Leave-one-out targets: valid = seq[-2], test = seq[-1].
    user = users[0]
    for split, position in (("validation", -2), ("test", -1)):
        row = builder.user_examples("retrieval", split, user, epoch=0, seed=0)[0]
        assert row["targets"] == builder.item_ids[builder.full[user][position]]
        assert row["history_ids"].split() == [builder.item_ids[i] for i in builder.full[user][:position]]


def test_chunk_tokenization_equals_seqio_tokenization(beauty):
    vocab = beauty.vocabulary
    for kind in ("retrieval", "ranking", "bpr"):
        task = seqio.get_mixture_or_task(f"beauty_{kind}")
        ds = task.get_dataset(sequence_length=None, split="validation", shuffle=False)
        for _, ex in zip(range(20), ds.as_numpy_iterator()):
            for key in ("inputs", "targets"):
                expected = list(vocab.encode(ex[f"{key}_pretokenized"].decode())) + [vocab.eos_id]
                assert ex[key].tolist() == expected, (kind, key)


def test_mlm_is_t5_span_corruption_of_the_history_text(beauty):
    builder, vocab = beauty.builder, beauty.vocabulary
    sentinel0 = vocab.vocab_size - 1  # <extra_id_0>
    for user in range(0, 2000, 200):
        row = builder.user_examples("mlm", "train", user, epoch=3, seed=0)[0]
        targets = row["targets"]
        assert targets[0] == sentinel0
        sentinels = targets[targets >= vocab.vocab_size - vocab.extra_ids]
        assert np.array_equal(sentinels, sentinel0 - np.arange(len(sentinels)))
        spans, current = {}, None
        for t in targets.tolist():
            if t >= vocab.vocab_size - vocab.extra_ids:
                current, spans[t] = t, []
            else:
                spans[current].append(t)
        prefix = vocab.encode(kinds.get("mlm").templates[int(row["template"].split("/")[1][0])].inputs.strip())
        body = row["inputs"][len(prefix):].tolist()
        rebuilt = [x for t in body for x in (spans[t] if t in spans else [t])]
        history = templates.history_text([builder.item_texts[i] for i in builder.train[user][-20:]])
        assert rebuilt == vocab.encode(history)[-len(rebuilt):]  # the most recent 128 tokens
        noise = len(targets) - len(sentinels)
        assert noise == max(1, round(0.15 * len(rebuilt)))


def test_templates_md_shows_every_current_template():
    import pathlib

    text = (pathlib.Path(tasks.__file__).parent / "TEMPLATES.md").read_text(encoding="utf-8")
    assert text.startswith(f"# Task templates (version {templates.TEMPLATES_VERSION})")
    for task_templates in kinds.templates_by_kind().values():
        for template in task_templates:
            assert f"### `{template.id}`" in text
            assert template.inputs in text, f"TEMPLATES.md is stale for {template.id}: regenerate it"
