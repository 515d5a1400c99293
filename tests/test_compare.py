"""`recjax compare`: paired statistics between two prediction files, checked by hand."""
import json

import numpy as np
import pytest

from recjax.cli import compare as compare_cli
from recjax.evaluation import paired as compare
from recjax.predictions import read_predictions


def _write(path, task, ranks, targets=None):
    with open(path, "w", encoding="utf-8") as f:
        for user, rank in enumerate(ranks):
            target = (targets or {}).get(user, f"t{user}")
            f.write(json.dumps({"task": task, "kind": task.rsplit("_", 1)[-1], "user": user, "target": target,
                                "target_rank": rank, "ranked": []}) + "\n")
    return str(path)


def test_hand_made_files_give_hand_computed_differences(tmp_path, capsys):
    a = _write(tmp_path / "a.jsonl", "beauty_retrieval", [0, -1, 3, 12])
    b = _write(tmp_path / "b.jsonl", "beauty_retrieval", [0, 0, -1, 5])
    rows = {r["metric"]: r for r in compare.compare(read_predictions(a), read_predictions(b),
                                                    samples=2000)}
    assert rows["hit@5"]["a"] == 0.5 and rows["hit@5"]["b"] == 0.5 and rows["hit@5"]["diff"] == 0.0
    assert rows["hit@10"]["a"] == 0.5 and rows["hit@10"]["b"] == 0.75 and rows["hit@10"]["diff"] == 0.25
    # McNemar at 10: user 2 hits only under A; users 1 and 3 only under B; exact two-sided p = 1.
    assert (rows["hit@10"]["only_a"], rows["hit@10"]["only_b"]) == (1, 2)
    assert rows["hit@10"]["p_mcnemar"] == pytest.approx(1.0)
    ndcg_a = (1 + 1 / np.log2(5)) / 4
    ndcg_b = (1 + 1 + 1 / np.log2(7)) / 4
    assert rows["ndcg@10"]["a"] == pytest.approx(ndcg_a) and rows["ndcg@10"]["b"] == pytest.approx(ndcg_b)
    assert rows["ndcg@10"]["diff"] == pytest.approx(ndcg_b - ndcg_a)
    assert rows["ndcg@10"]["ci_low"] <= rows["ndcg@10"]["diff"] <= rows["ndcg@10"]["ci_high"]
    kept = compare.compare(read_predictions(a), read_predictions(b), samples=2000, metrics={"hit@10", "ndcg@10"})
    assert kept == [rows["hit@10"], rows["ndcg@10"]]  # only those rows, each the same as in the full comparison
    assert compare_cli.main([a, b, "--samples", "500", "--plot", str(tmp_path / "d.png")]) == 0
    out = capsys.readouterr().out
    assert "| beauty_retrieval | hit@10 | 4 | 0.5000 | 0.7500 | +0.2500 |" in out
    assert (tmp_path / "d.png").stat().st_size > 0


def test_interval_contains_the_true_difference_and_p_is_small_when_it_should_be():
    rng = np.random.default_rng(1)
    n = 4000
    a = (rng.random(n) < 0.30).astype(float)
    b = np.where(rng.random(n) < 0.5, a, (rng.random(n) < 0.40).astype(float))  # paired, E[b - a] = 0.05
    out = compare.paired_bootstrap(a, b, samples=4000)
    assert out["ci_low"] <= 0.05 <= out["ci_high"] and out["ci_low"] > 0 and out["p_bootstrap"] < 0.01
    same = compare.paired_bootstrap(a, a.copy(), samples=1000)
    assert same["diff"] == 0 and same["p_bootstrap"] == 1.0
    # McNemar by hand: 30 discordant users, 5 vs 25: two-sided binomial p = 2 * P(X <= 5 | 30, 1/2)
    from math import comb
    x = np.array([1] * 5 + [0] * 25 + [1] * 10)
    y = np.array([0] * 5 + [1] * 25 + [1] * 10)
    want = 2 * sum(comb(30, k) for k in range(6)) / 2 ** 30
    assert compare.mcnemar(x, y)["p_mcnemar"] == pytest.approx(want)


def test_bad_files_are_one_line(tmp_path, capsys):
    a = _write(tmp_path / "a.jsonl", "beauty_retrieval", [0, 1])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task": "beauty_retrieval", "kind": "retrieval", "user": 0, "target_rank": 1}\nnot json\n')
    assert compare_cli.main([a, str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{bad}:2:" in err[0]
    other = _write(tmp_path / "o.jsonl", "beauty_retrieval", [0, 1], targets={1: "x"})
    assert compare_cli.main([a, other]) == 2
    assert "user 1 has target 't1' in A but 'x' in B" in capsys.readouterr().err


def test_runs_with_different_item_id_schemes_are_matched_by_original_id(tmp_path):
    def write(path, ids):
        with open(path, "w") as f:
            for user, (target, original, rank) in enumerate(ids):
                f.write(json.dumps({"task": "b_retrieval", "kind": "retrieval", "user": user, "target": target, "target_original_id": original,
                                    "target_rank": rank, "ranked": []}) + "\n")
        return str(path)

    a = write(tmp_path / "a.jsonl", [("17", "B00A", 0), ("4", "B00B", -1)])
    b = write(tmp_path / "b.jsonl", [("<a_1><b_2>", "B00A", 3), ("<a_0><b_0>", "B00B", 1)])
    rows = {r["metric"]: r for r in compare.compare(read_predictions(a), read_predictions(b), 500)}
    assert rows["hit@5"]["a"] == 0.5 and rows["hit@5"]["b"] == 1.0
    c = write(tmp_path / "c.jsonl", [("<a_1><b_2>", "B00A", 3), ("<a_0><b_0>", "B00Z", 1)])
    with pytest.raises(ValueError, match="user 1 has target 'B00B' in A but 'B00Z' in B"):
        compare.compare(read_predictions(a), read_predictions(c), 500)


def test_a_row_without_its_kind_is_one_line_naming_the_file_and_line(tmp_path):
    """The kind (retrieval or ranking) is read from each row, never guessed from the task name."""
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps({"task": "beauty_retrieval", "user": 0, "target": "t", "target_rank": 0}) + "\n")
    with pytest.raises(ValueError, match=f"{path}:1: expected a JSON object with task, kind, user, target_rank"):
        read_predictions(str(path))
    path.write_text(json.dumps({"task": "x", "kind": "rating", "user": 0, "target": "t", "target_rank": 0}) + "\n")
    with pytest.raises(ValueError, match="kind must be one of"):
        read_predictions(str(path))


def test_a_timestamp_splits_several_cases_per_user_are_paired_case_by_case(tmp_path):
    """Under a timestamp split a user has a case per held-out interaction: rows pair by (user, target)."""
    def write(path, ranks):
        with open(path, "w", encoding="utf-8") as f:
            for (user, target), rank in ranks.items():
                f.write(json.dumps({"task": "ind_retrieval", "kind": "retrieval", "user": user, "target": target,
                                    "target_rank": rank, "ranked": []}) + "\n")
        return str(path)
    a = read_predictions(write(tmp_path / "a.jsonl", {(0, "x"): 0, (0, "y"): -1, (1, "x"): 3}))
    b = read_predictions(write(tmp_path / "b.jsonl", {(1, "x"): -1, (0, "y"): 0, (0, "x"): 0}))
    assert sorted(a["ind_retrieval"]) == [(0, "x"), (0, "y"), (1, "x")]
    rows = {r["metric"]: r for r in compare.compare(a, b, samples=200)}
    assert rows["hit@10"]["users"] == 3 and rows["hit@10"]["a"] == pytest.approx(2 / 3)
    assert (rows["hit@10"]["only_a"], rows["hit@10"]["only_b"]) == (1, 1)
    with pytest.raises(ValueError, match=r"a.jsonl:2: user 0's case 'x' of ind_retrieval appears twice"):
        read_predictions(write(tmp_path / "a.jsonl", {(0, "x"): 0}) and _twice(tmp_path / "a.jsonl"))


def _twice(path):
    line = open(path).read()
    open(path, "w").write(line + line)
    return str(path)


def test_exposure_counts_the_items_each_runs_lists_show(tmp_path, capsys):
    """Distinct items, effective number of items and the 10 most-shown items' share, by hand."""
    def write(path, lists):
        with open(path, "w", encoding="utf-8") as f:
            for user, ranked in enumerate(lists):
                f.write(json.dumps({"task": "b_retrieval", "kind": "retrieval", "user": user, "target": f"t{user}",
                                    "target_rank": -1, "ranked": ranked}) + "\n")
        return str(path)
    a = write(tmp_path / "a.jsonl", [["x", "y", "q"], ["x", "z", "q"], ["x", "y", "q"]])  # top-2 slots: x 3, y 2, z 1
    b = write(tmp_path / "b.jsonl", [["p", "q"], ["r", "s"], ["t", "u"]])
    rows = {r["metric"]: r for r in compare.exposure(read_predictions(a), read_predictions(b), k=2)}
    assert rows["distinct@2"]["a"] == 3 and rows["distinct@2"]["b"] == 6 and rows["distinct@2"]["users"] == 3
    share = np.array([3, 2, 1]) / 6
    assert rows["effective items@2"]["a"] == pytest.approx(np.exp(-(share * np.log(share)).sum()))
    assert rows["effective items@2"]["b"] == pytest.approx(6.0)
    assert rows["top-10 items' share@2"]["a"] == pytest.approx(1.0)
    assert compare_cli.main([a, b, "--samples", "200", "--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert "| b_retrieval | distinct@10 | 3 | 4 | 6 |" in out
    figures = json.loads((tmp_path / "c.json").read_text())
    assert {r["metric"] for r in figures["exposure"]} == {"distinct@10", "effective items@10", "top-10 items' share@10"}
    assert figures["paired"] and all("diff" in r for r in figures["paired"])
    # 12 items each shown once: the 10 most-shown hold 10 / 12 of the slots
    wide = write(tmp_path / "w.jsonl", [[f"i{u}", f"j{u}", f"k{u}"] for u in range(4)])
    assert compare.exposure(read_predictions(wide), read_predictions(wide), k=3)[2]["a"] == pytest.approx(10 / 12)
