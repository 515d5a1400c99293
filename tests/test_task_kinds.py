"""A task kind is defined once (tasks/kinds/): adding one is one module's worth of code, and the
registry, the mixtures, the SeqIO task and `recjax eval` all pick it up from its entry."""
import flax
import jax
import numpy as np
import pytest

import tasks
from recjax import metrics, network
from recjax.config import T5Config
from recjax.model import EncoderDecoderModel
from tasks import metric_fns, templates
from tasks.kinds import TaskKind, per_user

NUM_ITEMS = 30
NEW_TEMPLATES = templates.define("last_two", "{target}", "Last two items: {history}. The next one is")


@per_user
def _build(builder, split, user, rng):
    rows = []
    for history, target in builder.next_item_cases(split, user):
        template = builder.choose_template(NEW_KIND, rng)
        inputs, targets = template.render(history=builder.history_text(history, 2), target=builder.item_ids[target])
        rows.append(builder.row(NEW_KIND, template, user, inputs, targets, builder.item_ids[target], history))
    return rows


NEW_KIND = TaskKind(name="last_two", stream=97, templates=NEW_TEMPLATES, build=_build, count="prefixes",
                    description="retrieval from the two most recent items", evaluation="retrieval",
                    postprocess_fn=metric_fns.recommendation_postprocess,
                    metric_fns=lambda valid_ids: [metric_fns.retrieval_metric_fn(valid_ids)])
NEW_AUX = TaskKind(name="first_item", stream=98, build=per_user(lambda b, split, user, rng: [
    b.row(NEW_AUX, NEW_AUX.templates[0], user, *NEW_AUX.templates[0].render(target=b.item_ids[b.train[user][0]]))]),
    templates=templates.define("first_item", "{target}", "Which item came first?"), count="users",
    description="an auxiliary kind", auxiliary=True)


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    from recjax.data.writing import make_synthetic

    root = tmp_path_factory.mktemp("kinds")
    data_dir = make_synthetic(str(root / "data"), num_users=40, num_items=NUM_ITEMS, seed=5, max_len=8,
                              num_categories=3)
    vocab_path = tasks.dataset_vocabulary(data_dir=data_dir, vocab_size=400)
    tasks.kinds.register(NEW_KIND)
    tasks.kinds.register(NEW_AUX)
    try:
        yield tasks.register_dataset(data_dir, "kindsynth", vocab_path, max_history=6, num_negatives=9)
    finally:
        tasks.kinds.unregister(NEW_KIND.name)
        tasks.kinds.unregister(NEW_AUX.name)


def test_a_new_kind_gets_its_task_mixtures_and_examples(registered):
    assert registered.tasks["last_two"] == "kindsynth_last_two"
    assert tasks.kind_of("kindsynth_last_two") is NEW_KIND
    assert tasks.dataset_of("kindsynth_last_two").name == "kindsynth"
    mixtures = {name: sorted(t.name for t in tasks.get_mixture_or_task(m).tasks) for name, m in registered.mixtures.items()}
    assert "kindsynth_last_two" in mixtures["rec"] and "kindsynth_first_item" not in mixtures["rec"]
    assert "kindsynth_first_item" in mixtures["rec_aux"] and "rec_first_item" in mixtures
    builder = registered.builder
    train = builder.num_examples("last_two", "train")
    assert train == sum(len(t) - 1 for t in builder.train) and builder.num_examples("first_item", "test") == 40
    ex = next(tasks.get_mixture_or_task("kindsynth_last_two").get_dataset(
        None, split="test", shuffle=False, num_epochs=1).as_numpy_iterator())
    text = ex["inputs_pretokenized"].decode()
    assert text.startswith("Last two items: ") and text.count(";") == 1  # two items shown
    assert ex["template"].decode() == f"last_two/0@v{templates.TEMPLATES_VERSION}"


def test_a_new_kind_is_evaluated_by_its_entry(registered):
    """recjax eval scores the new kind as its `evaluation` says (constrained search over all items),
    equal to exhaustive scoring of every item; the auxiliary kind is skipped."""
    from recjax.decoding import DecodeOptions
    from recjax.evaluation import EvalOptions, evaluate_tasks, load_examples
    from recjax.scoring import Scorer, make_batches, tokenize

    vocab = -(-registered.vocabulary.vocab_size // 128) * 128
    config = T5Config(vocab_size=vocab, emb_dim=32, num_heads=2, head_dim=8, num_encoder_layers=1,
                      num_decoder_layers=1, mlp_dim=48)
    params = jax.tree_util.tree_map(np.asarray, flax.linen.meta.unbox(network.init_params(config, jax.random.PRNGKey(3))))
    model = EncoderDecoderModel(config)
    options = EvalOptions(batch_size=8, decode=DecodeOptions(beam_size=32, top_k=10), max_examples=8, progress=False)
    results = evaluate_tasks(model, params, "kindsynth_last_two", "test", options=options)
    by_task = {r.task: r for r in results}
    assert by_task["kindsynth_last_two"].kind == "last_two"
    with pytest.raises(ValueError, match="no recommendation task"):  # auxiliary: evaluation None
        evaluate_tasks(model, params, "kindsynth_first_item", "test", options=options)

    examples = load_examples(tasks.get_mixture_or_task("kindsynth_last_two"), "test", 8)
    ids = list(registered.builder.dataset.item_ids)
    scorer = Scorer(EncoderDecoderModel(config), params)
    scores = np.zeros((len(examples), len(ids)))
    pairs = [tokenize(registered.vocabulary, e["inputs_pretokenized"], item, line=e_i * len(ids) + j)
             for e_i, e in enumerate(examples) for j, item in enumerate(ids)]
    for chunk, features in make_batches(pairs, 64):
        for ex, value in zip(chunk, scorer.score(features)):
            scores.flat[ex.line] = value
    ranked = []
    for e, row in zip(examples, scores):
        seen = set(e["history_ids"].split())
        ranked.append([ids[i] for i in np.argsort(-row, kind="stable") if ids[i] not in seen][:10])
    want = metrics.retrieval_metrics(ranked, [e["target_id"] for e in examples], valid_ids=ids)
    got = by_task["kindsynth_last_two"].metrics
    for key in ("hit@5", "hit@10", "ndcg@5", "ndcg@10"):
        assert got[key] == pytest.approx(want[key], abs=1e-9), key


def test_kind_entries_are_checked():
    with pytest.raises(ValueError, match="stream 0 is 'retrieval'"):
        tasks.kinds.register(TaskKind(name="other", stream=0, templates=templates.define("other", "x", "y"),
                                      build=_build, count="users", description=""))
    with pytest.raises(ValueError, match="count must be one of"):
        TaskKind(name="x", stream=99, templates=templates.define("x", "x", "y"), build=_build, count="each",
                 description="")
    with pytest.raises(ValueError, match="built in"):
        tasks.kinds.unregister("ranking")
