"""The Amazon 2018 and 2023 formats (`recjax.data.review_stream`): a hand-computed example of the
2023 benchmark's policies (repeated pairs, k-core) and both splits, the 2018 fields, bad input one
line each, and generated files in the published formats against a plain-Python reference of the
benchmark's rules (AmazonReviews2023 benchmark_scripts: dedup earliest, k-core, leave-last-out)."""
import collections
import gzip
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from recjax.cli import prepare as prepare_cli
from recjax.data import load_prepared
from recjax.data.errors import DataError
from recjax.data.preparation import SourceOptions, build

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import generate_amazon_reviews as generator  # noqa: E402

S = 1000  # ms a second


def _write(path, lines, compress):
    opener = gzip.open if compress else open
    with opener(path, "wt", encoding="utf-8") as f:
        for line in lines:
            f.write(line if isinstance(line, str) else json.dumps(line))
            f.write("\n")


def r23(user, item, rating, seconds):
    return {"rating": rating, "title": "t", "text": "Great \"user_id\": \"AFAKE\" text", "images": [],
            "asin": item + "-V", "parent_asin": item, "user_id": user, "timestamp": seconds * S,
            "helpful_vote": 0, "verified_purchase": True}


# Hand-computed: after dedup (U1's I1 at 1 s: the lower rating; at 2 s: dropped) the 2-core drops
# I4 (one review), then U4 (one review left) and nothing more. Users by ID, reviews by (time, item).
REVIEWS_2023 = [
    r23("U2", "I3", 3.0, 25), r23("U1", "I1", 5.0, 1), r23("U2", "I2", 4.0, 15), r23("U3", "I4", 5.0, 1),
    r23("U1", "I1", 2.0, 1), r23("U1", "I2", 4.0, 30), r23("U1", "I1", 1.0, 2), r23("U3", "I1", 5.0, 2),
    r23("U4", "I1", 5.0, 1), r23("U2", "I1", 3.0, 40), r23("U5", "I3", 4.0, 7), r23("U1", "I3", 3.0, 50),
    r23("U3", "I2", 4.0, 3), r23("U5", "I2", 5.0, 7),
]
META_2023 = [
    {"main_category": "Office", "title": "Pen one", "features": ["long text"], "description": ["more"], "price": "\u2014",
     "store": "S1", "categories": ["Office", "Pens"], "details": {}, "parent_asin": "I1", "bought_together": None},
    {"main_category": "Office", "title": "Paper", "price": None, "store": "S2", "categories": [], "parent_asin": "I2"},
    {"main_category": "Office", "title": "Unreviewed", "price": 3.5, "store": "S9", "categories": [], "parent_asin": "I9"},
]
CUTS = (20 * S, 35 * S)


@pytest.fixture
def az23(tmp_path):
    src = tmp_path / "az23"
    src.mkdir()
    _write(src / "Office.jsonl.gz", REVIEWS_2023, compress=True)
    _write(src / "meta_Office.jsonl", META_2023, compress=False)
    return src


def _names(ds, seq):
    return [ds.item_original_ids[i] for i in seq]


def test_2023_policies_and_timestamp_split_by_hand(az23):
    ds, raw = build("amazon2023", str(az23), "office", options=SourceOptions(kcore=2, split="timestamp", split_times=CUTS,
                                                                             progress=False))
    assert ds.user_original_ids == ["U1", "U2", "U3", "U5"]
    assert [_names(ds, s) for s in ds.sequences] == [["I1", "I2", "I3"], ["I2", "I3", "I1"], ["I1", "I2"], ["I2", "I3"]]
    assert ds.item_original_ids == ["I1", "I2", "I3"]  # P5's sequential order walking the users
    assert [r.tolist() for r in ds.ratings] == [[2.0, 4.0, 3.0], [4.0, 3.0, 3.0], [5.0, 4.0], [5.0, 4.0]]
    assert [t.tolist() for t in ds.timestamps] == [[1, 30, 50], [15, 25, 40], [2, 3], [7, 7]]  # seconds
    assert [c.tolist() for c in ds.interaction_splits] == [[0, 1, 2], [0, 1, 2], [0, 0], [0, 0]]
    assert raw.dropped["repeated (user, item) records, earliest kept"] == 2
    assert raw.dropped["records removed by the 2/2-core filter"] == 2  # I4's review, then U4's
    assert raw.dropped["users removed by the 2/2-core filter"] == 1
    assert raw.notes["reviewed items without a metadata line"] == 1  # I3
    assert raw.notes["metadata prices that are not a number (kept unknown)"] == 1  # "—"; null is not counted
    assert ds.item_titles == ["Pen one", "Paper", ""] and ds.item_prices == [None, None, None]
    assert ds.item_attributes[0] == ["S1", "Office", "Pens"]  # store, then categories; no features/description
    # The benchmark's timestamp_w_his cases: every held-out interaction with all earlier ones.
    users, histories, targets = ds.next_item_cases("test")
    assert users.tolist() == [0, 1] and [_names(ds, h) for h in histories] == [["I1", "I2"], ["I2", "I3"]]
    assert _names(ds, targets) == ["I3", "I1"]
    users, histories, targets = ds.next_item_cases("valid")
    assert [_names(ds, h) for h in histories] == [["I1"], ["I2"]] and _names(ds, targets) == ["I2", "I3"]
    assert [_names(ds, s) for s in ds.train_sequences()] == [["I1"], ["I2"], ["I1", "I2"], ["I2", "I3"]]
    with pytest.raises(ValueError, match="timestamp split"):
        ds.loo_split("test")


def test_2023_leave_last_out_and_written_dataset(az23, tmp_path):
    out = tmp_path / "prepared"
    assert prepare_cli.main(["--format", "amazon2023", "--src", str(az23), "--out", str(out), "--no-tfds",
                             "--kcore", "2"]) == 0
    ds = load_prepared(str(out))
    assert ds.split_scheme == "leave_last_out" and ds.name == "office"
    assert ds.user_original_ids == ["U1", "U2"]  # U3 and U5 have 2 interactions: leave-last-out needs 3
    histories, targets = ds.loo_split("test")
    assert _names(ds, targets) == ["I3", "I1"] and [_names(ds, h) for h in histories] == [["I1", "I2"], ["I2", "I3"]]
    meta = json.load(open(out / "prepared.json"))
    assert meta["split"] == "leave_last_out" and meta["dropped"]["users with fewer than 3 interactions"] == 2


def test_timestamp_split_written_and_read_back_through_tasks(az23, tmp_path):
    # I5, reviewed by U3 and U5, leaves every user an item to draw a ranking negative from
    _write(az23 / "Office.jsonl.gz", REVIEWS_2023 + [r23("U3", "I5", 4.0, 4), r23("U5", "I5", 4.0, 8)], compress=True)
    out = tmp_path / "prepared"
    assert prepare_cli.main(["--format", "amazon2023", "--src", str(az23), "--out", str(out), "--no-tfds",
                             "--kcore", "2", "--split", "timestamp", "--split-times", f"{CUTS[0]},{CUTS[1]}"]) == 0
    ds = load_prepared(str(out))
    assert ds.split_times == CUTS and [c.tolist() for c in ds.interaction_splits][:2] == [[0, 1, 2], [0, 1, 2]]
    from tasks.examples import ExampleBuilder, TaskOptions

    builder = ExampleBuilder(ds, TaskOptions(num_negatives=1))
    assert builder.num_examples("retrieval", "test") == 2 and builder.num_examples("retrieval", "validation") == 2
    assert builder.num_examples("retrieval", "train") == 4  # U3's and U5's 3 training items: 2 prefixes each
    row = builder.user_examples("retrieval", "test", 1, 0, 0)[0]
    assert row["target_id"] == ds.item_ids[0] and row["history_ids"] == builder.ids([1, 2])  # U2: I2, I3 -> I1
    assert builder.examples_per_user("mim", "test").tolist() == [1, 1, 0, 0]  # users without a test case: none
    from recjax.data.stats import dataset_stats, format_stats

    assert (f"split          timestamp at {CUTS}: train 8 / valid 2 / test 2 interactions; 2 users with a test case"
            in format_stats(dataset_stats(ds)))
    with pytest.raises(ValueError, match="needs `recjax prepare --split leave_last_out`"):
        ds.loo_split("valid")


def test_2018_fields_prices_and_repeated_metadata(tmp_path):
    def review(user, asin, rating, day):
        return {"overall": rating, "verified": True, "reviewTime": "09 1, 2016", "reviewerID": user, "asin": asin,
                "style": {"Size:": " 3 oz"}, "reviewerName": "A", "reviewText": "ok", "summary": "ok",
                "unixReviewTime": day * 86400}
    reviews = [review(u, a, 4.0, d) for u in ("AU1", "AU2", "AU3") for d, a in enumerate(("X1", "X2", "X3"), start=1)]
    meta = [{"category": ["Industrial & Scientific", "Lab", "Pipettes"], "title": "Pipette", "brand": "Acme",
             "price": "$1,299.00", "asin": "X1", "feature": [], "description": []},
            {"category": ["Industrial & Scientific"], "title": "first line counts", "brand": "", "price": "$5.00 - $9.00",
             "asin": "X2"},
            {"category": [], "title": "a repeated line", "brand": "", "price": "$1.00", "asin": "X2"},
            {"category": ["Industrial & Scientific"], "title": "Tape", "brand": "B", "price": "", "asin": "X3"}]
    _write(tmp_path / "Industrial_and_Scientific_5.json.gz", reviews, compress=True)
    _write(tmp_path / "meta_Industrial_and_Scientific.json.gz", meta, compress=True)
    ds, raw = build("amazon2018", str(tmp_path), "ind", options=SourceOptions(kcore=0, progress=False))
    assert ds.item_original_ids == ["X1", "X2", "X3"] and ds.item_titles == ["Pipette", "first line counts", "Tape"]
    assert ds.item_prices == [1299.0, None, None] and ds.item_attributes[0] == ["Acme", "Lab", "Pipettes"]
    assert raw.notes["metadata prices that are not one dollar amount (kept unknown)"] == 1  # the range; "" is unknown
    assert ds.timestamps[0].tolist() == [86400, 2 * 86400, 3 * 86400]
    with pytest.raises(DataError, match="needs --split-times"):
        build("amazon2018", str(tmp_path), "ind", options=SourceOptions(split="timestamp", progress=False))


@pytest.mark.parametrize("line,expected", [
    ('{"rating": 5.0, "parent_asin": "I1", "user_id": "U1", "timestamp": 1', r"Office\.jsonl:2: expected a JSON object"),
    ('{"rating": "5.0", "parent_asin": "I1", "user_id": "U1", "timestamp": 1}', r":2: expected field 'rating' \(a number\), got '5.0'"),
    ('{"rating": 5.0, "parent_asin": "I1", "timestamp": 1}', r":2: expected field 'user_id' \(a non-empty string\), got missing"),
    ('{"rating": 5.0, "parent_asin": "I1", "user_id": "U1", "timestamp": 1.5}', r":2: expected field 'timestamp' \(an integer\), got 1.5"),
    ('[1, 2]', r":2: expected a JSON object per line"),
])
def test_bad_review_lines_one_line_each(tmp_path, line, expected):
    _write(tmp_path / "Office.jsonl", [r23("U1", "I1", 5.0, 1), line], compress=False)
    _write(tmp_path / "meta_Office.jsonl", META_2023, compress=False)
    with pytest.raises(DataError, match=expected) as e:
        build("amazon2023", str(tmp_path), "office", options=SourceOptions(progress=False))
    assert "\n" not in str(e.value)


def test_bad_metadata_line_and_cli_messages(az23, tmp_path, capsys):
    _write(az23 / "meta_Office.jsonl", [META_2023[0], '{"parent_asin": "I2", "title": "unterminated'], compress=False)
    with pytest.raises(DataError, match=r"meta_Office\.jsonl:2: expected a JSON object per line"):
        build("amazon2023", str(az23), "office", options=SourceOptions(kcore=2, progress=False))
    assert prepare_cli.main(["--format", "p5", "--src", str(az23), "--out", str(tmp_path / "x"), "--split", "timestamp"]) != 0
    assert "only --format amazon2018 / amazon2023 have a timestamp split" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def reference_leave_last_out(path, kcore):
    """The benchmark's rules in plain Python (as AmazonReviews2023's kcore_filtering.py and
    last_out_split.py state them), with recjax's documented orders: users by ID, a user's reviews
    by (time, item ID), duplicates at one time keep the lower rating; then users with < 3 dropped."""
    rows = []
    with gzip.open(path, "rt") as f:
        for line in f:
            d = json.loads(line)
            rows.append((d["user_id"], d["parent_asin"], float(d["rating"]), d["timestamp"]))
    best = {}
    for user, item, rating, t in rows:
        key = (user, item)
        if key not in best or (t, rating) < best[key]:
            best[key] = (t, rating)
    inters = [(u, i, r, t) for (u, i), (t, r) in best.items()]
    while True:
        uc, ic = collections.Counter(u for u, *_ in inters), collections.Counter(i for _, i, *_ in inters)
        kept = [x for x in inters if uc[x[0]] >= kcore and ic[x[1]] >= kcore]
        if len(kept) == len(inters):
            break
        inters = kept
    by_user = collections.defaultdict(list)
    for u, i, r, t in inters:
        by_user[u].append((t, i, r))
    return {u: [i for _, i, _ in sorted(v)] for u, v in sorted(by_user.items()) if len(v) >= 3}


def test_generated_2023_file_matches_the_reference_and_ignores_hash_seeds(tmp_path):
    reviews, _ = generator.generate(str(tmp_path / "raw"), "2023", "Office_Products", 30_000, seed=3)
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"prepared{seed}"
        env = dict(os.environ, PYTHONHASHSEED=seed)
        subprocess.run([sys.executable, "-m", "recjax.cli", "prepare", "--format", "amazon2023", "--src",
                        str(tmp_path / "raw"), "--out", str(out), "--no-tfds"], check=True, env=env, capture_output=True)
        outs.append(load_prepared(str(out)))
    a, b = outs
    assert a.user_original_ids == b.user_original_ids and all(np.array_equal(x, y) for x, y in zip(a.sequences, b.sequences))
    expected = reference_leave_last_out(reviews, 5)
    assert a.user_original_ids == list(expected) and len(expected) > 200
    assert [_names(a, s) for s in a.sequences] == list(expected.values())
    assert sum(p is None for p in a.item_prices) > 0 and sum(not t for t in a.item_titles) > 0  # mixed prices, no meta


def test_tfds_copy_cuts_each_user_before_the_timestamp_split(az23):
    from recjax.data.tfds_builder import SPLIT_ENDS, user_example

    ds, _ = build("amazon2023", str(az23), "office", options=SourceOptions(kcore=2, split="timestamp", split_times=CUTS,
                                                                           progress=False))
    cut = {split: [len(user_example(ds, u, end, True)["items"]) for u in range(ds.num_users)]
           for split, end in SPLIT_ENDS.items()}
    assert cut == {"train": [1, 1, 2, 2], "validation": [2, 2, 2, 2], "test": [3, 3, 2, 2]}


def _same_prepared(a, b):
    assert a.user_original_ids == b.user_original_ids and a.item_original_ids == b.item_original_ids
    assert a.item_ids == b.item_ids and a.item_titles == b.item_titles and a.item_prices == b.item_prices
    for name in ("sequences", "ratings", "timestamps", "rating_splits", "interaction_splits"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None) and (x is None or all(np.array_equal(p, q) for p, q in zip(x, y))), name


@pytest.fixture(scope="session")
def beam_env(tmp_path_factory):
    """The environment of a `--runner beam` subprocess: this one where Beam is installed, else
    setup.py's pinned apache-beam installed beside it (its protobuf cap conflicts with
    sentencepiece's model proto, so the extra lives in a preparation environment of its own)."""
    env = dict(os.environ)
    try:
        import apache_beam  # noqa: F401
        return env
    except ImportError:
        pass
    uv = pytest.importorskip("uv", reason="uv (a test dependency) installs the Beam extra beside the tests")

    pin = re.search(r'BEAM_REQUIRES = \["([^"]+)"\]', open(os.path.join(REPO, "setup.py")).read()).group(1)
    target = tmp_path_factory.mktemp("beam_site")
    proc = subprocess.run([uv.find_uv_bin(), "pip", "install", "--quiet", "--python", sys.executable, "--target",
                           str(target), pin], capture_output=True, text=True, timeout=900)
    if proc.returncode and re.search(r"(?i)(connect|network|dns|timed out|failed to fetch)", proc.stderr):
        pytest.skip(f"package registry unreachable: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr
    env["PYTHONPATH"] = os.pathsep.join([str(target), REPO])
    return env


def _prepare(args, env):
    proc = subprocess.run([sys.executable, "-m", "recjax.cli", "prepare", *args], env=env, capture_output=True,
                          text=True, timeout=900, cwd=REPO)
    return proc.returncode, proc.stderr


@pytest.mark.parametrize("release,split", [("2023", "timestamp"), ("2018", "leave_last_out")])
def test_beam_direct_runner_writes_the_default_paths_dataset(tmp_path, beam_env, release, split):
    generator.generate(str(tmp_path / "raw"), release, "Office_Products", 6_000, seed=5)
    extra = ["--split", "timestamp", "--split-times", "1300000000000,1500000000000"] if split == "timestamp" else []
    outs = {}
    for runner in ("local", "beam"):
        out = tmp_path / runner
        args = ["--format", f"amazon{release}", "--src", str(tmp_path / "raw"), "--out", str(out), "--no-tfds",
                "--kcore", "3", "--runner", runner, *extra]
        if runner == "beam":
            args += ["--beam_pipeline_options=--runner=DirectRunner"]  # "=": the value starts with --
        code, err = _prepare(args, beam_env)
        assert code == 0, err[-3000:]
        outs[runner] = (load_prepared(str(out)), json.load(open(out / "prepared.json")))
    (local, local_meta), (beam, beam_meta) = outs["local"], outs["beam"]
    _same_prepared(local, beam)
    assert local.num_users > 50 and local_meta["dropped"] == beam_meta["dropped"]
    assert local_meta["notes"] == beam_meta["notes"]


def test_beam_reports_a_bad_line_in_one_line(tmp_path, beam_env):
    _write(tmp_path / "Office.jsonl", [r23("U1", "I1", 5.0, 1), '{"rating": "five", "parent_asin": "I1", '
                                       '"user_id": "U1", "timestamp": 1}'], compress=False)
    _write(tmp_path / "meta_Office.jsonl", META_2023, compress=False)
    code, err = _prepare(["--format", "amazon2023", "--src", str(tmp_path), "--out", str(tmp_path / "out"),
                          "--no-tfds", "--runner", "beam", "--beam_pipeline_options=--runner=DirectRunner"], beam_env)
    lines = [line for line in err.splitlines() if line.startswith("recjax prepare: error:")]
    assert code != 0 and len(lines) == 1, err[-3000:]
    assert re.search(r"Office\.jsonl: expected field 'rating' \(a number\), got 'five' in line", lines[0])
    assert not (tmp_path / "out").exists()
