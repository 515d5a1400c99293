"""The evaluator, `recjax eval` and `recjax infer` on a small synthetic catalog and a tiny T5.

References are computed independently of the decoder: every item ID (retrieval), every candidate
(ranking) and every rating string (rating) scored by `EncoderDecoderModel.score_batch` (teacher-
forced full passes) on the task's own examples, then ranked with numpy and fed to
`recjax.metrics`. The catalog (40 items) is smaller than the beam (48), so constrained beam
search must return exactly the exhaustive top-k. Evaluation runs on the 8 fake CPU devices of
conftest.py (batch sharded over `data`), the references on one device.
"""
import json
import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recjax import metrics, network
from recjax.config import T5Config
from recjax.decoding import DecodeOptions
from recjax.model import EncoderDecoderModel
from recjax.model_inputs import shift_right

NUM_ITEMS = 40
MAX_EXAMPLES = 16
DECODE = dict(beam_size=48, top_k=20)
OPTIONS = dict(batch_size=16, ranking_batch_size=16, max_examples=MAX_EXAMPLES,
               progress=False)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    import tasks
    from recjax.data.writing import make_synthetic

    root = tmp_path_factory.mktemp("eval")
    data_dir = make_synthetic(str(root / "data"), num_users=60, num_items=NUM_ITEMS, seed=3, max_len=8,
                              num_categories=4)
    vocab_path = tasks.dataset_vocabulary(data_dir=data_dir, vocab_size=400)
    registered = tasks.register_dataset(data_dir, "evalsynth", vocab_path, max_history=6, num_negatives=9)
    vocab = -(-registered.vocabulary.vocab_size // 128) * 128
    config = T5Config(vocab_size=vocab, emb_dim=32, num_heads=2, head_dim=8, num_encoder_layers=2,
                      num_decoder_layers=2, mlp_dim=48)
    model = EncoderDecoderModel(config)
    params = flax.linen.meta.unbox(network.init_params(config, jax.random.PRNGKey(7)))
    params = jax.tree_util.tree_map(np.asarray, params)
    # Random RMSNorm scales: a fresh model has them all 1.0, which hides a misplaced one.
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: (rng.uniform(0.5, 1.5, x.shape).astype(np.float32)
                         if getattr(path[-1], "key", "") == "scale" else x), params)
    return {"root": root, "data_dir": data_dir, "vocab_path": vocab_path, "registered": registered,
            "model": model, "params": params}


@pytest.fixture(scope="module")
def results(env):
    from recjax.evaluation import EvalOptions, evaluate_tasks

    return evaluate_tasks(env["model"], env["params"], "evalsynth_rec", "test", options=EvalOptions(**OPTIONS, decode=DecodeOptions(**DECODE)))


def _score_pairs(model, params, inputs, targets):
    """score_batch of (input, target) token lists, padded to one shape: [pairs]."""
    enc_len = max(len(x) for x in inputs)
    dec_len = max(len(t) for t in targets)
    enc = np.zeros((len(inputs), enc_len), np.int32)
    dec = np.zeros((len(targets), dec_len), np.int32)
    for i, (x, t) in enumerate(zip(inputs, targets)):
        enc[i, :len(x)], dec[i, :len(t)] = x, t
    batch = {"encoder_input_tokens": jnp.asarray(enc), "decoder_target_tokens": jnp.asarray(dec),
             "decoder_input_tokens": shift_right(jnp.asarray(dec))}
    return np.asarray(jax.jit(model.score_batch)(params, batch))


def _examples(task_name):
    import seqio

    from recjax.evaluation import load_examples

    return load_examples(seqio.get_mixture_or_task(task_name), "test", MAX_EXAMPLES)


def test_evaluate_equals_exhaustive_scoring(env, results):
    model, params, reg = env["model"], env["params"], env["registered"]
    by_kind = {r.kind: r for r in results}
    assert sorted(by_kind) == ["ranking", "rating", "retrieval"]
    tok = reg.vocabulary.tokenizer
    ids = list(reg.builder.dataset.item_ids)
    id_tokens = [tok.EncodeAsIds(i) + [1] for i in ids]

    # Retrieval: all items scored per user, history removed, top 20.
    ex = _examples("evalsynth_retrieval")
    scores = _score_pairs(model, params, [e["inputs"] for e in ex for _ in ids], id_tokens * len(ex))
    scores = scores.reshape(len(ex), len(ids))
    ranked = []
    for e, row in zip(ex, scores):
        seen = {ids.index(h) for h in e["history_ids"].split()}
        ranked.append([ids[i] for i in np.argsort(-row, kind="stable") if i not in seen][:20])
    want = metrics.retrieval_metrics(ranked, [e["target_id"] for e in ex], valid_ids=ids)
    got = by_kind["retrieval"].metrics
    for key in ("hit@5", "hit@10", "ndcg@5", "ndcg@10"):
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
    assert got["valid_id_rate"] == 1.0 and got["num_users"] == MAX_EXAMPLES
    curve = by_kind["retrieval"].curves["hit@k"]
    assert len(curve) == 20 and curve[4] == pytest.approx(want["hit@5"]) and curve[9] == pytest.approx(want["hit@10"])

    # Ranking: the candidates' log-likelihoods.
    ex = _examples("evalsynth_ranking")
    cands = [e["candidate_ids"].split() for e in ex]
    flat = _score_pairs(model, params, [e["inputs"] for e, c in zip(ex, cands) for _ in c],
                        [id_tokens[ids.index(i)] for c in cands for i in c]).reshape(len(ex), -1)
    positive = [c.index(e["target_id"]) for e, c in zip(ex, cands)]
    want = metrics.ranking_metrics(flat, positive)
    for key in ("hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10"):
        assert by_kind["ranking"].metrics[key] == pytest.approx(want[key], abs=1e-12), key

    # Rating: the expectation over "1".."5", each scored as a whole target.
    ex = _examples("evalsynth_rating")
    ratings = [tok.EncodeAsIds(str(r)) + [1] for r in range(1, 6)]
    ll = _score_pairs(model, params, [e["inputs"] for e in ex for _ in ratings], ratings * len(ex)).reshape(len(ex), 5)
    p = np.exp(ll - ll.max(1, keepdims=True))
    expected = (p / p.sum(1, keepdims=True)) @ np.arange(1, 6)
    true = [float(e["targets_pretokenized"]) for e in ex]
    want = metrics.rating_metrics(expected, true)
    got = by_kind["rating"].metrics
    assert got["rmse"] == pytest.approx(want["rmse"], abs=1e-6) and got["mae"] == pytest.approx(want["mae"], abs=1e-6)
    # Generated ratings: greedy decoding by hand (argmax of the full forward pass, padding banned,
    # at most the longest rating + 2 tokens), parsed as a number, 3.0 where it is not one.
    max_len = max(len(r) for r in ratings) + 2
    generated = []
    logits_fn = jax.jit(model.logits)  # one shape: the decoder input padded to max_len (causal, so
    enc_len = max(len(e["inputs"]) for e in ex)  # the padding after a position cannot change it)
    for e in ex:
        seq = []
        enc = np.zeros((1, enc_len), np.int32)
        enc[0, :len(e["inputs"])] = e["inputs"]
        while len(seq) < max_len and (not seq or seq[-1] != 1):
            dec = np.zeros((1, max_len), np.int32)
            dec[0, :len(seq) + 1] = [0] + seq
            batch = {"encoder_input_tokens": jnp.asarray(enc), "decoder_input_tokens": jnp.asarray(dec),
                     "decoder_target_tokens": jnp.ones_like(dec)}
            logits = np.array(logits_fn(params, batch))[0, len(seq)]
            logits[0] = -np.inf
            seq.append(int(np.argmax(logits)))
        try:
            value = float(tok.DecodeIds(seq[:-1])) if seq[-1] == 1 else None
        except ValueError:
            value = None
        generated.append(value if value is not None and np.isfinite(value) else None)
    fallback = np.array([3.0 if g is None else g for g in generated])
    assert got["generated_rmse"] == pytest.approx(np.sqrt(np.mean((fallback - np.array(true)) ** 2)), abs=1e-9)
    assert got["generated_mae"] == pytest.approx(np.mean(np.abs(fallback - np.array(true))), abs=1e-9)
    assert got["generated_parse_rate"] == pytest.approx(np.mean([g is not None for g in generated]), abs=1e-12)


def test_generated_rating_metrics_hand_computed():
    """What the evaluator reports for generated ratings, on outputs written by hand: parsed as a
    number, 3.0 (the middle of the scale) where the output is not one."""
    from tasks.metric_fns import parse_rating, rating_metric_fn

    outputs = [" 4 ", "4.5 stars", "nan", "2.5", "1"]
    parsed = [parse_rating(o) for o in outputs]
    assert parsed == [4.0, None, None, 2.5, 1.0]
    got = rating_metric_fn([5.0, 1.0, 4.0, 2.0, 3.0], parsed)
    # predictions 4, 3, 3, 2.5, 1 -> errors 1, 2, 1, 0.5, 2
    assert got["rmse"] == pytest.approx(np.sqrt((1 + 4 + 1 + 0.25 + 4) / 5), abs=1e-12)
    assert got["mae"] == pytest.approx((1 + 2 + 1 + 0.5 + 2) / 5, abs=1e-12)
    assert got["rating_parse_rate"] == pytest.approx(3 / 5, abs=1e-12)


def test_evaluate_options_are_checked():
    from recjax.evaluation import EvalOptions

    with pytest.raises(ValueError, match="top_k must be >= 10"):
        EvalOptions(decode=DecodeOptions(top_k=5))
    with pytest.raises(ValueError, match="batch_size"):
        EvalOptions(batch_size=0)


def test_decode_options_are_bound_on_their_own_configurable():
    """EvalOptions holds a DecodeOptions: beam search is bound as recjax.decoding.DecodeOptions.*,
    and a binding on EvalOptions is refused in one line (the redirect of the old names is gone)."""
    import gin

    from recjax import gin_utils
    import recjax.evaluation  # noqa: F401  (registers the configurables)

    try:
        with pytest.raises(gin_utils.GinFlagError, match=r"beam_size"):
            gin_utils.parse_gin([], ["recjax.evaluation.EvalOptions.beam_size = 48"])
        gin_utils.parse_gin([], ["recjax.decoding.DecodeOptions.beam_size = 48"])
        assert recjax.evaluation.EvalOptions().decode.beam_size == 48
    finally:
        gin.clear_config()


def _gin_file(env) -> str:
    path = env["root"] / "evalsynth.gin"
    path.write_text(f"""import tasks
tasks.register_dataset:
  data_dir = '{env['data_dir']}'
  name = 'evalsynth'
  vocab_path = '{env['vocab_path']}'
  max_history = 6
  num_negatives = 9
""")
    return str(path)


@pytest.fixture(scope="module")
def checkpoint(env):
    from recjax import checkpoints

    directory = str(env["root"] / "ckpt")
    checkpoints.save_params(directory, env["params"], env["model"].config, step=7)
    return directory


def test_eval_binary_writes_metrics_report_and_plot(env, results, checkpoint):
    import gin

    from recjax.cli import eval as eval_binary

    out = env["root"] / "eval_out"
    argv = [f"--gin_file={_gin_file(env)}", "--gin_file=gin/runs/eval.gin", "--checkpoint", checkpoint,
            "--task", "evalsynth_rec", "--output_dir", str(out), "--gin.EVAL_BATCH_SIZE=16",
            f"--gin.recjax.evaluation.EvalOptions.max_examples={MAX_EXAMPLES}",
            "--gin.recjax.decoding.DecodeOptions.beam_size=48",
            "--gin.recjax.evaluation.EvalOptions.progress=False"]
    try:
        assert eval_binary.main(argv) == 0
    finally:
        gin.clear_config()
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["info"]["step"] == 7 and doc["info"]["split"] == "test"
    for r in results:  # the same numbers as the library call on the same params
        assert doc["tasks"][r.task]["metrics"] == pytest.approx(r.metrics, abs=1e-9)
    report = (out / "report.md").read_text()
    assert "## evalsynth_retrieval (retrieval)" in report and "hit@10" in report and "metrics.png" in report
    png = (out / "metrics.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]


def test_eval_binary_errors_are_one_line(env, tmp_path, capsys):
    import gin

    from recjax.cli import eval as eval_binary

    try:
        code = eval_binary.main([f"--gin_file={_gin_file(env)}", "--gin_file=gin/runs/eval.gin", "--checkpoint",
                                 str(tmp_path / "nope"), "--task", "evalsynth_rec", "--output_dir", str(tmp_path)])
    finally:
        gin.clear_config()
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "nope" in err and "not a recjax checkpoint" in err


def test_infer_binary_answers_good_lines_and_reports_bad_ones(env, checkpoint, tmp_path):
    import gin

    from recjax import recommend
    from recjax.cli import infer
    from recjax.evaluation import catalog_of

    reg = env["registered"]
    ids = reg.builder.dataset.item_ids
    lines = [
        json.dumps({"user": "u1", "history": [ids[3], ids[5], ids[8]]}),
        "{not json",
        json.dumps({"user": "u2", "history": []}),
        json.dumps({"user": "u3", "history": [ids[1], "no-such-item"]}),
        json.dumps({"user": "u4", "history": [ids[2]], "titles": ["a custom title"]}),
        json.dumps(["history"]),
        json.dumps({"user": "u5", "history": [ids[0]], "titles": ["one", "two"]}),
        json.dumps({"user": "u6"}),
        json.dumps({"user": "u7", "history": [ids[4]] * (recommend.MAX_HISTORY_ITEMS + 1)}),
        json.dumps({"user": "u8", "history": [ids[6]]}),  # after the non-UTF-8 line below: answered
    ]
    src, dst = tmp_path / "users.jsonl", tmp_path / "out" / "recs.jsonl"
    raw = [line.encode() for line in lines]
    raw.insert(9, b'{"user": "u9", "history": ["' + ids[1].encode() + b'\xff"]}')  # line 10: one bad byte
    src.write_bytes(b"\n".join(raw) + b"\n")
    try:
        code = infer.main([f"--gin_file={_gin_file(env)}", "--checkpoint", checkpoint, "--input", str(src),
                           "--output", str(dst), "--top_k", "5", "--batch_size", "8", "--no_progress"])
    finally:
        gin.clear_config()
    assert code == 0
    out = [json.loads(line) for line in dst.read_text().splitlines()]
    assert [o["line"] for o in out] == list(range(1, 12))
    errors = {o["line"]: o["error"] for o in out if "error" in o}
    assert set(errors) == {2, 3, 4, 6, 7, 8, 9, 10}
    assert errors[2] == "not valid JSON (Expecting property name enclosed in double quotes at column 2)"
    assert "empty \"history\"" in errors[3]
    assert "unknown item ID 'no-such-item'" in errors[4] and "evalsynth" in errors[4]
    # Error records keep the user when it could be read.
    assert [out[i].get("user") for i in range(1, 10)] == [None, "u2", "u3", "u4", None, "u5", "u6", "u7", None]
    assert errors[9] == f'"history" holds {recommend.MAX_HISTORY_ITEMS + 1:,} items; one line may hold at most 1,000'
    column = raw[9].index(b"\xff") + 1
    assert errors[10] == f"not UTF-8 text (byte 0xff at column {column})"
    assert len(out[10]["recommendations"]) == 5 and out[10]["user"] == "u8"
    assert "expected a JSON object" in errors[6]
    assert "\"titles\" must be a list of 1 strings" in errors[7]
    assert "missing \"history\"" in errors[8]

    # Good lines: 5 real items, best first, never the history, scores = the model's log-likelihood.
    catalog = catalog_of("evalsynth", env["model"].config.vocab_size)
    for o, history, titles in ((out[0], [ids[3], ids[5], ids[8]], None), (out[4], [ids[2]], ["a custom title"])):
        recs = o["recommendations"]
        assert len(recs) == 5 and [r["rank"] for r in recs] == [1, 2, 3, 4, 5]
        assert all(r["item_id"] in ids and r["item_id"] not in history for r in recs)
        assert all(r["title"] == catalog.item_titles[catalog.index(r["item_id"])] for r in recs)
        scores = [r["score"] for r in recs]
        assert scores == sorted(scores, reverse=True)
        request = recommend.Request(0, None, [catalog.index(h) for h in history], titles)
        text = recommend.render_inputs(request, env["registered"].builder, 0)
        if titles:
            assert "a custom title" in text
        enc = catalog.tokenizer.EncodeAsIds(text) + [1]
        ref = _score_pairs(env["model"], env["params"], [enc] * 5,
                           [catalog.tokenizer.EncodeAsIds(r["item_id"]) + [1] for r in recs])
        np.testing.assert_allclose(scores, ref, atol=1e-4)


def test_train_evaluator_logs_flat_metrics(env, results):
    """What `train_lib.train(evaluator=...)` calls: evaluator(params=..., step=...) -> flat dict."""
    from recjax.evaluation import EvalOptions, TrainEvaluator

    evaluator = TrainEvaluator(model_config=env["model"].config, mixture_or_task_name="evalsynth_retrieval",
                               split="test", options=EvalOptions(**OPTIONS, decode=DecodeOptions(**DECODE)))
    flat = evaluator(params=env["params"], step=3)
    retrieval = next(r for r in results if r.kind == "retrieval")
    assert flat == {f"evalsynth_retrieval/{k}": pytest.approx(v) for k, v in retrieval.metrics.items()}


def test_validation_gin_wires_the_evaluator_into_training():
    import gin

    from recjax import gin_utils
    from recjax.evaluation import EvalOptions, TrainEvaluator

    try:
        gin_utils.parse_gin(["gin/models/t5_1_1_tiny.gin", "gin/runs/finetune.gin", "gin/runs/validation.gin"],
                            ["MIXTURE_OR_TASK_NAME = 'beauty_rec'", "MODEL_DIR = '/nonexistent'", "TRAIN_STEPS = 10"])
        assert gin.query_parameter("EVAL_PERIOD/macro.value") == 1000
        assert gin.query_parameter("train_lib.train.evaluator").configurable.wrapped is TrainEvaluator
        evaluator = TrainEvaluator()  # as train() gets it: every argument from the gin files
        assert evaluator.mixture_or_task_name == "beauty_rec" and evaluator.split == "validation"
        assert evaluator.model.config.emb_dim == 64 and evaluator.options.max_examples == 1024
        assert isinstance(evaluator.options, EvalOptions)
    finally:
        gin.clear_config()


def test_predictions_give_back_the_reported_metrics(results, tmp_path):
    """Every evaluated user's line of `recjax eval --predictions` recomputes the task's metrics."""
    from recjax.evaluation import report
    from recjax.predictions import read_predictions

    path = tmp_path / "predictions.jsonl"
    report.write_predictions(str(path), results)
    read = read_predictions(str(path))
    for r in results:
        if r.kind not in ("retrieval", "ranking"):
            continue
        rows = read[r.task]
        assert len(rows) == r.num_examples
        per_user = metrics.per_user_from_ranks([row["target_rank"] for row in rows.values()], r.kind)
        for name, values in per_user.items():
            assert values.mean() == pytest.approx(r.metrics[name], abs=1e-12), (r.task, name)
        for row in rows.values():
            if row["target_rank"] >= 0:
                assert row["ranked"][row["target_rank"]] == row["target"]


def test_max_examples_is_a_seeded_sample_not_the_first_users():
    from recjax.evaluation import sample_indices

    first = sample_indices(1000, 50, seed=0)
    assert len(first) == 50 and len(set(first.tolist())) == 50 and (np.diff(first) > 0).all()
    assert first.max() > 100  # spread over the users, not the first N
    assert sample_indices(1000, 50, seed=0).tolist() == first.tolist()
    assert sample_indices(1000, 50, seed=1).tolist() != first.tolist()
    assert sample_indices(40, 50).tolist() == list(range(40))


def _exhaustive_top(env, examples, k):
    """Every item scored for every user (teacher forcing), history removed, best k: [users][k]."""
    reg = env["registered"]
    tok = reg.vocabulary.tokenizer
    ids = list(reg.builder.dataset.item_ids)
    id_tokens = [tok.EncodeAsIds(i) + [1] for i in ids]
    scores = _score_pairs(env["model"], env["params"], [e["inputs"] for e in examples for _ in ids],
                          id_tokens * len(examples)).reshape(len(examples), len(ids))
    out = []
    for e, row in zip(examples, scores):
        seen = {ids.index(h) for h in e["history_ids"].split()}
        out.append([ids[i] for i in np.argsort(-row, kind="stable") if i not in seen][:k])
    return out


@pytest.mark.parametrize("BEAM", [14])
def test_exact_search_equals_exhaustive_scoring_with_a_beam_smaller_than_the_catalog(env, BEAM):
    """Beam 14 of 40 items, the history excluded: `search='exact'` returns every user's exhaustive
    top-10 (best-first search over the trie). A decoder that stopped excluding
    the history would spend beams on history items and fail here (the history filter after
    decoding would leave fewer than 10)."""
    from recjax.evaluation import EvalOptions, evaluate_tasks

    examples = _examples("evalsynth_retrieval")
    want = _exhaustive_top(env, examples, 10)
    [exact] = evaluate_tasks(env["model"], env["params"], "evalsynth_retrieval", "test",
                             options=EvalOptions(**OPTIONS, decode=DecodeOptions(beam_size=BEAM, top_k=10), search="exact"))
    rows = exact.extra["predictions"]
    assert [row["ranked"] for row in rows] == want
    # The beam pass certified some users (its certificate is sound: those lists equal the exact
    # ones), not all; best-first expanded fewer prefixes than the trie has nodes.
    certified = [row["certified_exact"] for row in rows]
    assert exact.metrics["certified_exact@10"] == pytest.approx(np.mean(certified))
    assert 0 < np.mean(certified) < 1, certified
    beam = evaluate_tasks(env["model"], env["params"], "evalsynth_retrieval", "test",
                          options=EvalOptions(**OPTIONS, decode=DecodeOptions(beam_size=BEAM, top_k=10)))[0]
    for row, beam_row in zip(rows, beam.extra["predictions"]):
        if row["certified_exact"]:
            assert beam_row["ranked"] == row["ranked"]
    recall = np.mean([len(set(b["ranked"]) & set(r["ranked"])) / len(r["ranked"])
                      for b, r in zip(beam.extra["predictions"], rows)])
    assert exact.metrics["beam_recall@10"] == pytest.approx(recall)
    assert 0 < exact.metrics["mean_node_expansions"] < env["registered"].builder.num_items * 3


def test_infer_input_equals_the_evaluation_input_token_for_token(env):
    """`recjax infer` renders a history with the training code: for every test user, the request
    built from the user's history gives the evaluation example's input ids exactly."""
    from recjax import recommend
    from recjax.evaluation import catalog_of

    catalog = catalog_of("evalsynth", env["model"].config.vocab_size)
    builder = env["registered"].builder
    vocabulary = env["registered"].vocabulary
    examples = _examples("evalsynth_retrieval")
    for ex in examples:
        history = ex["history_ids"].split()
        line = json.dumps({"user": int(ex["user"]), "history": history})
        request = recommend.parse_line(1, line, catalog)
        template = int(ex["template"].split("/")[1].split("@")[0])
        ids = vocabulary.encode(recommend.render_inputs(request, builder, template)) + [1]
        assert ids == list(ex["inputs"]), ex["user"]


def test_eval_infer_and_score_restore_through_one_function_onto_the_same_shardings(env, checkpoint, tmp_path,
                                                                                   monkeypatch):
    """The three serving commands read a checkpoint through `recjax.restore.restore_model` (one
    resolution, one orbax manager) onto the partitioner's shardings: the same for all three."""
    import gin

    from recjax import restore
    from recjax.cli import eval as eval_binary, infer, score

    calls = []
    original = restore.restore_model

    def spy(checkpoint_, partitioner, step=None, **kwargs):
        out = original(checkpoint_, partitioner, step, **kwargs)
        calls.append((checkpoint_.directory, jax.tree.map(lambda x: x.sharding, out.params), out.step))
        return out

    monkeypatch.setattr(restore, "restore_model", spy)
    ids = env["registered"].builder.dataset.item_ids
    users = tmp_path / "users.jsonl"
    users.write_text(json.dumps({"user": "u1", "history": [ids[3], ids[5]]}) + "\n")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"inputs": "history 1 2", "targets": ids[0]}) + "\n")
    try:
        assert eval_binary.main([f"--gin_file={_gin_file(env)}", "--gin_file=gin/runs/eval.gin", "--checkpoint",
                                 checkpoint, "--task", "evalsynth_retrieval", "--output_dir", str(tmp_path / "eval"),
                                 "--gin.EVAL_BATCH_SIZE=16", "--gin.recjax.evaluation.EvalOptions.max_examples=16",
                                 "--gin.recjax.evaluation.EvalOptions.progress=False"]) == 0
    finally:
        gin.clear_config()
    try:
        assert infer.main([f"--gin_file={_gin_file(env)}", "--checkpoint", checkpoint, "--input", str(users),
                           "--output", str(tmp_path / "recs.jsonl"), "--batch_size", "8", "--no_progress"]) == 0
    finally:
        gin.clear_config()
    assert score.main(["--checkpoint", checkpoint, "--vocab", env["vocab_path"], "--input", str(pairs),
                       "--output", str(tmp_path / "scores.jsonl"), "--no_progress"]) == 0
    assert len(calls) == 3, "eval, infer and score each restore through recjax.restore.restore_model"
    directories, shardings, steps = zip(*calls)
    assert len(set(directories)) == 1 and set(steps) == {7}
    assert shardings[0] == shardings[1] == shardings[2]
    assert all(isinstance(s, jax.sharding.NamedSharding) for s in jax.tree.leaves(shardings[0]))


@pytest.mark.slow
@pytest.mark.parametrize("fraction", [1 / 3, 0.9])  # train's fallback is tested at 1/3, 1/2 and 9/10 too
def test_a_truncated_tensor_file_is_one_line_for_eval_infer_and_score(env, checkpoint, tmp_path, fraction):
    """The largest tensor file of the checkpoint cut short: eval and infer (which read onto the
    mesh, where the storage error names no tensor) and score exit 2 with one line naming the step
    and the tensor; nothing is written."""
    import shutil
    import subprocess
    import sys

    corrupt = tmp_path / "ckpt"
    shutil.copytree(checkpoint, corrupt)
    data = max((p for p in (corrupt / "7" / "params").rglob("*") if p.is_file() and p.parent.name == "d"),
               key=lambda p: p.stat().st_size)
    with open(data, "r+b") as f:
        f.truncate(int(data.stat().st_size * fraction))
    users = tmp_path / "users.jsonl"
    users.write_text(json.dumps({"user": "u1", "history": [env["registered"].builder.dataset.item_ids[3]]}) + "\n")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"inputs": "history 1 2", "targets": "3"}) + "\n")
    commands = {
        "eval": ["eval", f"--gin_file={_gin_file(env)}", "--gin_file=gin/runs/eval.gin", "--checkpoint", str(corrupt),
                 "--task", "evalsynth_retrieval", "--output_dir", str(tmp_path / "eval"), "--gin.EVAL_BATCH_SIZE=16"],
        "infer": ["infer", f"--gin_file={_gin_file(env)}", "--checkpoint", str(corrupt), "--input", str(users),
                  "--output", str(tmp_path / "recs.jsonl"), "--batch_size", "8"],
        "score": ["score", "--checkpoint", str(corrupt), "--vocab", env["vocab_path"], "--input", str(pairs),
                  "--output", str(tmp_path / "scores.jsonl")],
    }
    for name, argv in commands.items():
        proc = subprocess.run([sys.executable, "-m", "recjax.cli", *argv], capture_output=True, text=True, timeout=300,
                              env=dict(os.environ, JAX_PLATFORMS="cpu"))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, (name, proc.stderr[-3000:])
        assert lines[0].startswith(f"recjax {name}: error: "), (name, lines)
        assert f"{corrupt / '7'}: checkpoint step 7 is corrupt (tensor " in lines[0], (name, lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "pairs.jsonl", "users.jsonl"]


@pytest.mark.slow
def test_eval_in_a_fresh_process_imports_nothing_configurable_after_its_config_is_locked(env, checkpoint, tmp_path):
    """`recjax eval` as a user runs it, in a new process: a module with Gin configurables first
    imported after the config is locked (the evaluator's lazy imports) would stop it."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "recjax.cli", "eval", f"--gin_file={_gin_file(env)}",
                           "--gin_file=gin/runs/eval.gin", "--checkpoint", str(checkpoint), "--task",
                           "evalsynth_retrieval", "--output_dir", str(tmp_path / "eval"), "--gin.EVAL_BATCH_SIZE=16"],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "eval" / "metrics.json").is_file()


def test_infer_takes_original_ids_and_answers_with_both_forms(env, checkpoint, tmp_path):
    """A history written with the catalog's original IDs (ASINs on Amazon data) is the same request
    as one written with the model's IDs; every recommendation carries both forms."""
    import gin

    from recjax.cli import infer

    dataset = env["registered"].builder.dataset
    history = [3, 5, 8]
    lines = [{"user": "ids", "history": [dataset.item_ids[i] for i in history]},
             {"user": "originals", "history": [dataset.item_original_ids[i] for i in history]},
             {"user": "unknown", "history": ["B000NOPE"]}]
    src, dst = tmp_path / "users.jsonl", tmp_path / "recs.jsonl"
    src.write_text("".join(json.dumps(line) + "\n" for line in lines))
    try:
        assert infer.main([f"--gin_file={_gin_file(env)}", "--checkpoint", checkpoint, "--input", str(src),
                           "--output", str(dst), "--top_k", "5", "--batch_size", "8", "--no_progress"]) == 0
    finally:
        gin.clear_config()
    by_ids, by_originals, unknown = [json.loads(line) for line in dst.read_text().splitlines()]
    assert by_ids["recommendations"] == by_originals["recommendations"]
    for rec in by_ids["recommendations"]:
        index = dataset.item_ids.index(rec["item_id"])
        assert rec["original_id"] == dataset.item_original_ids[index]
    assert "unknown item ID 'B000NOPE'" in unknown["error"] and "original IDs such as" in unknown["error"]
