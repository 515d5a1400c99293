"""Every raw format on small hand-written files: what is read, the policies, bad input."""
import gzip
import json
import os
import zipfile

import numpy as np
import pytest

from recjax.data.errors import DataError
from recjax.data.preparation import SourceOptions, build, read_raw

# ---------------------------------------------------------------- amazon2014

ASINS = ["B000050B6B", "B00006L9LC", "B0000535UX", "B00014340I", "B000052YJM", "B0009RF9DW"]
USERS = ["A1YJEY40YUW4SE", "A60XNB876KYML", "A3G6XNM240RMWA", "A1PQFDGFI7HLOD", "A1XCAPTRJJ1YQ0", "A2LYD8GCS2U7R7"]
DAY = 86400
T0 = 1_364_774_400  # 2013-04-01


def _review(user, asin, rating, t):
    return {"reviewerID": user, "asin": asin, "reviewerName": "Jane D.", "helpful": [0, 0],
            "reviewText": "Works well, smells nice.", "overall": float(rating), "summary": "Nice",
            "unixReviewTime": t, "reviewTime": "04 1, 2013"}


def amazon_records():
    """6 users x 5 of 6 items (each item reviewed 5 times): a 5-core; plus a user with 3 reviews
    (one of an item nobody else reviews) that the 5-core filter removes, and one repeated review."""
    records = []
    for u, user in enumerate(USERS):
        for k, asin in enumerate(a for i, a in enumerate(ASINS) if i != u):
            records.append(_review(user, asin, 1 + (u + k) % 5, T0 + (5 - k) * DAY))  # file order != time order
    records.append(_review(USERS[0], ASINS[1], 2, T0 + 30 * DAY))  # repeated (user, item): dropped, earliest kept
    records += [_review("ASHORT", ASINS[0], 5, T0), _review("ASHORT", ASINS[1], 4, T0 + DAY), _review("ASHORT", "B0RAREITEM", 3, T0)]
    return records


def amazon_meta():
    meta = []
    for i, asin in enumerate(ASINS):
        meta.append({"asin": asin, "title": f"Rosewater Facial Toner {i}", "price": 12.5 + i, "imUrl": "http://ecx.images-amazon.com/images/I/41.jpg",
                     "related": {"also_bought": [ASINS[(i + 1) % 6]]}, "salesRank": {"Beauty": 1000 + i},
                     "categories": [["Beauty", "Skin Care", "Face", "Toners & Astringents"], ["Beauty", "Skin Care"]],
                     "brand": "Thayers" if i % 2 == 0 else ""})
    meta[5].pop("price")
    meta.append({"asin": "B0UNREVIEWD", "title": "Not reviewed", "categories": [["Beauty"]]})
    return meta


def write_amazon(directory, records=None, meta=None, category="Beauty"):
    os.makedirs(directory, exist_ok=True)
    with gzip.open(os.path.join(directory, f"reviews_{category}_5.json.gz"), "wt", encoding="utf-8") as f:
        for r in records if records is not None else amazon_records():
            f.write(json.dumps(r) + "\n")
    with gzip.open(os.path.join(directory, f"meta_{category}.json.gz"), "wt", encoding="utf-8") as f:
        for m in meta if meta is not None else amazon_meta():
            f.write(repr(m) + "\n")  # the 2014 meta files are Python literals, not JSON
    return str(directory)


def test_amazon2014_reads_filters_and_orders(tmp_path):
    ds, raw = build("amazon2014", write_amazon(tmp_path), "beauty", indexing="sequential")
    assert (ds.num_users, ds.num_items, ds.num_interactions) == (6, 6, 30)
    assert raw.dropped["repeated (user, item) records, earliest kept"] == 1
    assert raw.dropped["records removed by the 5/5-core filter"] == 3
    assert raw.dropped["users removed by the 5/5-core filter"] == 1
    assert "ASHORT" not in ds.user_original_ids and "B0RAREITEM" not in ds.item_original_ids
    # user 0 wrote items 1..5 at decreasing times: time order is the reverse of the file order
    u0 = ds.user_original_ids.index(USERS[0])
    assert [ds.item_original_ids[i] for i in ds.sequences[u0]] == ASINS[5:0:-1]
    assert np.all(np.diff(ds.timestamps[u0]) > 0)
    assert ds.ratings[u0].tolist() == [5.0, 4.0, 3.0, 2.0, 1.0]  # 1 + (0 + k) % 5 for k = 4..0
    # sequential indexing: P5's numbering by first appearance
    assert ds.item_ids[ds.sequences[0][0]] == "1"
    i = ds.item_original_ids.index(ASINS[2])
    assert ds.item_titles[i] == "Rosewater Facial Toner 2"
    assert ds.item_attributes[i] == ["Thayers", "Skin Care", "Face", "Toners & Astringents"]
    assert ds.item_prices[i] == 14.5 and ds.item_prices[ds.item_original_ids.index(ASINS[5])] is None
    assert ds.item_attributes[ds.item_original_ids.index(ASINS[1])] == ["Skin Care", "Face", "Toners & Astringents"]  # empty brand


def test_amazon2014_kcore_off_keeps_everything(tmp_path):
    ds, raw = build("amazon2014", write_amazon(tmp_path), "b", options=SourceOptions(kcore=0))
    assert (ds.num_users, ds.num_items, ds.num_interactions) == (7, 7, 33)


def test_amazon2014_meta_without_a_line_gives_empty_title(tmp_path):
    ds, raw = build("amazon2014", write_amazon(tmp_path, meta=amazon_meta()[1:]), "b")
    assert ds.item_titles[ds.item_original_ids.index(ASINS[0])] == ""
    assert raw.notes["reviewed items without a meta line"] == 2  # counted before the 5-core filter (B0RAREITEM)
    assert sum(1 for t in ds.item_titles if not t) == 1


# ---------------------------------------------------------------- p5 / s3rec

P5_SEQUENCES = "1 1 2 3 4\r\n2 5 1 6\r\n3 2 6 7 5 3\r\n"  # CRLF, as P5's Beauty file
P5_ASINS = ["B001", "B002", "B003", "B004", "B005", "B006", "B007"]


def write_p5(directory, sequences=P5_SEQUENCES, with_text=True, asins=P5_ASINS):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "sequential_data.txt"), "w", newline="") as f:
        f.write(sequences)
    maps = {"id2item": {str(i + 1): a for i, a in enumerate(asins)}, "id2user": {"1": "AU1", "2": "AU2", "3": "AU3"},
            "item2id": {a: str(i + 1) for i, a in enumerate(asins)}}
    with open(os.path.join(directory, "datamaps.json"), "w") as f:
        json.dump(maps, f)
    if with_text:
        with open(os.path.join(directory, "item_generative_indexing_phase_0.txt"), "w") as f:
            f.writelines(f"{a} keyword text {a.lower()}\n" for a in reversed(asins))
    return str(directory)


def test_p5_sequential_indexing_keeps_the_file_ids(tmp_path):
    ds, raw = build("p5", write_p5(tmp_path), "mini", indexing="sequential")
    assert [[ds.item_ids[i] for i in s] for s in ds.sequences] == [["1", "2", "3", "4"], ["5", "1", "6"], ["2", "6", "7", "5", "3"]]
    assert ds.item_original_ids == P5_ASINS
    assert ds.item_titles[2] == "keyword text b003"
    assert ds.user_original_ids == ["AU1", "AU2", "AU3"]
    assert ds.ratings is None and ds.timestamps is None
    with pytest.raises(ValueError, match="has no ratings"):
        ds.rating_split("train")


def test_p5_random_indexing_is_a_seeded_permutation(tmp_path):
    src = write_p5(tmp_path)
    a, _ = build("p5", src, "mini", indexing="random", seed=1)
    b, _ = build("p5", src, "mini", indexing="random", seed=1)
    c, _ = build("p5", src, "mini", indexing="random", seed=2)
    assert sorted(a.item_ids, key=int) == [str(i) for i in range(1, 8)]
    assert a.item_ids == b.item_ids and a.item_ids != c.item_ids
    assert a.item_ids != [str(i) for i in range(1, 8)]
    seq_ds, _ = build("p5", src, "mini", indexing="sequential")
    assert all(np.array_equal(x, y) for x, y in zip(a.sequences, seq_ds.sequences))  # only the ID text differs
    assert a.item_index(a.item_ids[3]) == 3
    with pytest.raises(KeyError, match="not an item ID"):
        a.item_index("99")


def test_p5_without_item_text(tmp_path):
    ds, raw = build("p5", write_p5(tmp_path, with_text=False), "mini")
    assert ds.item_titles == [""] * 7


def write_s3rec(directory, name="Mini", sequences="1 1 2 3\n2 3 4 1\n3 4 2 5 1\n", attributes=None):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"{name}.txt"), "w") as f:
        f.write(sequences)
    attributes = attributes or {"1": [1, 2], "2": [3], "3": [1, 4], "4": [], "5": [2, 5]}
    with open(os.path.join(directory, f"{name}_item2attributes.json"), "w") as f:
        json.dump(attributes, f)
    return str(directory)


def test_s3rec_reads_sequences_and_attribute_ids(tmp_path):
    ds, raw = build("s3rec", write_s3rec(tmp_path), "mini", indexing="sequential")
    assert ds.num_users == 3 and ds.num_items == 5 and ds.num_interactions == 10
    assert [[ds.item_ids[i] for i in s] for s in ds.sequences] == [["1", "2", "3"], ["3", "4", "1"], ["4", "2", "5", "1"]]
    assert ds.item_attributes[0] == ["1", "2"] and ds.item_attributes[3] == []
    assert ds.item_original_ids == ["1", "2", "3", "4", "5"]


def test_s3rec_joins_p5_text_through_an_item_map(tmp_path):
    # The same 3 users in P5 numbering: S3-Rec item k is P5 item p5_of[k].
    p5_of = {1: 3, 2: 1, 3: 2, 4: 5, 5: 4}
    s3 = [[1, 2, 3], [3, 4, 1], [4, 2, 5, 1]]
    p5_lines = "".join(f"{u + 1} " + " ".join(str(p5_of[i]) for i in s) + "\n" for u, s in enumerate(s3))
    write_p5(tmp_path, sequences=p5_lines, asins=P5_ASINS[:5])
    write_s3rec(tmp_path)
    with open(tmp_path / "s3rec_to_p5_item_map.json", "w") as f:
        json.dump({str(k): v for k, v in p5_of.items()}, f)
    ds, _ = build("s3rec", str(tmp_path), "mini", indexing="sequential")
    assert ds.item_original_ids == [P5_ASINS[p5_of[k] - 1] for k in range(1, 6)]
    assert ds.item_titles[0] == f"keyword text {P5_ASINS[2].lower()}"
    # a wrong map is caught on the sequences themselves
    with open(tmp_path / "s3rec_to_p5_item_map.json", "w") as f:
        json.dump({"1": 1, "2": 3, "3": 2, "4": 5, "5": 4}, f)
    with pytest.raises(DataError, match="does not carry the S3-Rec sequences"):
        build("s3rec", str(tmp_path), "mini")


# ---------------------------------------------------------------- movielens

U_ITEM = [  # id|title|release|video release|IMDb URL|19 genre flags
    "1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0",
    "2|GoldenEye (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?GoldenEye%20(1995)|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|1|0|0",
    "3|Misérables, Les (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Miserables%20(1995)|0|0|0|0|0|0|0|0|1|0|0|0|1|0|0|0|0|0|0",
    "4|Get Shorty (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Get%20Shorty%20(1995)|0|1|0|0|0|1|0|0|1|0|0|0|0|0|0|0|0|0|0",
    "5|Never Rated (1996)|01-Jan-1996||http://us.imdb.com/|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0",
]
U_DATA = [  # user movie rating time; file order is not user or time order
    (196, 1, 3, 881250949), (186, 2, 3, 891717742), (196, 3, 1, 881250940), (186, 1, 5, 891717700),
    (196, 4, 4, 881250949), (186, 3, 2, 891717800), (22, 1, 4, 878887116), (22, 2, 2, 878887110), (22, 4, 5, 878887200),
]


def write_ml100k(directory):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "u.data"), "w") as f:
        f.writelines(f"{u}\t{m}\t{r}\t{t}\n" for u, m, r, t in U_DATA)
    with open(os.path.join(directory, "u.item"), "wb") as f:  # GroupLens ships u.item in Latin-1
        f.write("\n".join(U_ITEM).encode("latin-1") + b"\n")
    return str(directory)


def test_movielens_100k(tmp_path):
    ds, _ = build("movielens", write_ml100k(tmp_path / "ml-100k"), "ml", indexing="sequential")
    assert (ds.num_users, ds.num_items, ds.num_interactions) == (3, 4, 9)  # movie 5 has no rating
    assert ds.user_original_ids == ["22", "186", "196"]  # users by numeric id
    movies = lambda u: [ds.item_original_ids[i] for i in ds.sequences[u]]  # noqa: E731
    assert movies(2) == ["3", "1", "4"]  # 196: by time, the tie (1, 4 at 881250949) keeps file order
    assert ds.ratings[2].tolist() == [1.0, 3.0, 4.0]
    assert ds.timestamps[2].tolist() == [881250940, 881250949, 881250949]
    i = ds.item_original_ids.index("3")
    assert ds.item_titles[i] == "Misérables, Les (1995)"
    assert ds.item_attributes[ds.item_original_ids.index("1")] == ["Animation", "Children's", "Comedy"]


def test_movielens_100k_from_a_zip(tmp_path):
    write_ml100k(tmp_path / "ml-100k")
    with zipfile.ZipFile(tmp_path / "ml-100k.zip", "w") as z:
        for name in ("u.data", "u.item"):
            z.write(tmp_path / "ml-100k" / name, f"ml-100k/{name}")
    a, _ = build("movielens", str(tmp_path / "ml-100k.zip"), "ml")
    b, _ = build("movielens", str(tmp_path / "ml-100k"), "ml")
    assert a.item_titles == b.item_titles and all(np.array_equal(x, y) for x, y in zip(a.sequences, b.sequences))


def test_movielens_1m(tmp_path):
    with open(tmp_path / "ratings.dat", "w") as f:
        f.write("1::1193::5::978300760\n1::661::3::978302109\n1::914::3::978301968\n2::1193::4::978298413\n2::661::2::978299000\n2::914::5::978299100\n")
    with open(tmp_path / "movies.dat", "wb") as f:
        f.write("661::James and the Giant Peach (1996)::Animation|Children's|Musical\n914::My Fair Lady (1964)::Musical|Romance\n"
                "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n2::Jumanji (1995)::Adventure|Children's|Fantasy\n".encode("latin-1"))
    ds, _ = build("movielens", str(tmp_path), "ml1m", indexing="sequential")
    assert (ds.num_users, ds.num_items, ds.num_interactions) == (2, 3, 6)
    assert [ds.item_original_ids[i] for i in ds.sequences[0]] == ["1193", "914", "661"]
    assert ds.item_attributes[ds.item_original_ids.index("661")] == ["Animation", "Children's", "Musical"]


def test_movielens_widedeep_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    users, movies, ratings, times = zip(*U_DATA)
    pq.write_table(pa.table({"user_id": users, "movie_id": movies, "rating": ratings, "timestamp": times}),
                   tmp_path / "MovieLens100k_data.parquet.brotli", compression="brotli")
    genres = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy"]
    rows = [line.split("|") for line in U_ITEM]
    table = {"movie_id": [int(r[0]) for r in rows], "movie_title": [r[1] for r in rows]}
    table.update({g: [int(r[5 + k]) for r in rows] for k, g in enumerate(genres)})
    pq.write_table(pa.table(table), tmp_path / "MovieLens100k_items.parquet.brotli", compression="brotli")
    a, _ = build("movielens", str(tmp_path), "ml")
    b, _ = build("movielens", write_ml100k(tmp_path / "text"), "ml")
    assert a.item_titles == b.item_titles and a.user_original_ids == b.user_original_ids
    assert all(np.array_equal(x, y) for x, y in zip(a.sequences, b.sequences))
    assert a.item_attributes[a.item_original_ids.index("1")] == ["Animation", "Children's", "Comedy"]


# ---------------------------------------------------------------- bad input

def _expect(pattern, fmt, src, **options):
    with pytest.raises(DataError, match=pattern) as info:
        read_raw(fmt, str(src), SourceOptions(**options))
    assert "\n" not in str(info.value)
    return str(info.value)


def test_malformed_lines_name_file_and_line(tmp_path):
    _expect(r"sequential_data\.txt:2: expected integer ids separated by spaces, got 'x7'", "p5", write_p5(tmp_path / "a", "1 1 2 3\n2 5 x7\n"))
    _expect(r"sequential_data\.txt:1: expected 'user_id item_id", "p5", write_p5(tmp_path / "b", "1\n"))
    _expect(r"sequential_data\.txt:2: user 1 already has a sequence on line 1", "p5", write_p5(tmp_path / "c", "1 1 2 3\n1 4 5 6\n"))
    records = amazon_records()
    src = write_amazon(tmp_path / "d", records=records)
    with gzip.open(os.path.join(src, "reviews_Beauty_5.json.gz"), "at") as f:
        f.write('{"reviewerID": "A1", "asin": "B2", "overall": 5.0\n')
    _expect(rf"reviews_Beauty_5\.json\.gz:{len(records) + 1}: expected a JSON object per line", "amazon2014", src)
    records[3].pop("unixReviewTime")
    _expect(r"reviews_Beauty_5\.json\.gz:4: expected field 'unixReviewTime' \(int\), got missing", "amazon2014", write_amazon(tmp_path / "e", records=records))
    src = write_amazon(tmp_path / "f")
    with gzip.open(os.path.join(src, "meta_Beauty.json.gz"), "at") as f:
        f.write("{'asin': 'B000050B6B', 'title': 'unclosed\n")
    _expect(r"meta_Beauty\.json\.gz:8: expected a Python-literal dict per line", "amazon2014", src)
    src = write_ml100k(tmp_path / "g")
    with open(os.path.join(src, "u.data"), "a") as f:
        f.write("1\t2\t3\n")
    _expect(r"u\.data:10: expected 'user \\t movie \\t rating \\t timestamp' \(4 fields\)", "movielens", src)


def test_meta_is_never_evaluated(tmp_path):
    src = write_amazon(tmp_path)
    with gzip.open(os.path.join(src, "meta_Beauty.json.gz"), "at") as f:
        f.write("{'asin': 'B000050B6B', 'title': __import__('os').system('touch PWNED')}\n")
    _expect(r"meta_Beauty\.json\.gz:8: expected a Python-literal dict", "amazon2014", src)
    assert not os.path.exists("PWNED")


def test_truncated_gzip(tmp_path):
    src = write_amazon(tmp_path)
    path = os.path.join(src, "reviews_Beauty_5.json.gz")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    _expect(r"reviews_Beauty_5\.json\.gz:\d+: truncated gzip file", "amazon2014", src)
    open(path, "wb").write(b"not gzip at all\n")
    _expect(r"reviews_Beauty_5\.json\.gz:1: corrupt gzip data", "amazon2014", src)


def test_unknown_items(tmp_path):
    _expect(r"sequential_data\.txt:2: unknown item id 99 \(not in .*datamaps\.json id2item\)", "p5", write_p5(tmp_path / "a", "1 1 2 3\n2 4 99 5\n"))
    _expect(r"Mini\.txt:3: unknown item id 6 \(not in .*Mini_item2attributes\.json\)", "s3rec", write_s3rec(tmp_path / "b", sequences="1 1 2 3\n2 3 4 1\n3 6 2 5\n"))
    src = write_ml100k(tmp_path / "c")
    with open(os.path.join(src, "u.data"), "a") as f:
        f.write("5\t77\t4\t881250949\n")
    _expect(r"u\.data:10: unknown movie id 77 \(not in .*u\.item", "movielens", src)


def test_non_utf8_byte(tmp_path):
    src = write_p5(tmp_path / "a")
    with open(os.path.join(src, "sequential_data.txt"), "ab") as f:
        f.write(b"4 1 2\xff 3\n")
    _expect(r"sequential_data\.txt:4: byte 0xff at column 6 is not valid UTF-8", "p5", src)
    records = amazon_records()
    src = write_amazon(tmp_path / "b", records=records)
    with gzip.open(os.path.join(src, "reviews_Beauty_5.json.gz"), "ab") as f:
        f.write(b'{"reviewerID": "A\xe9", "asin": "B2", "overall": 5.0, "unixReviewTime": 1}\n')
    _expect(rf"reviews_Beauty_5\.json\.gz:{len(records) + 1}: byte 0xe9 at column 18 is not valid UTF-8", "amazon2014", src)


def test_empty_files(tmp_path):
    _expect(r"sequential_data\.txt: empty file", "p5", write_p5(tmp_path / "a", ""))
    src = write_p5(tmp_path / "b")
    open(os.path.join(src, "datamaps.json"), "w").close()
    _expect(r"datamaps\.json: empty file", "p5", src)
    _expect(r"reviews_Beauty_5\.json\.gz: empty file", "amazon2014", write_amazon(tmp_path / "c", records=[]))
    src = write_ml100k(tmp_path / "d")
    open(os.path.join(src, "u.data"), "w").write("\n\n")
    _expect(r"u\.data: empty file", "movielens", src)


def test_missing_required_files(tmp_path):
    src = write_p5(tmp_path / "a")
    os.remove(os.path.join(src, "datamaps.json"))
    _expect(r"datamaps\.json: missing required file", "p5", src)
    os.makedirs(tmp_path / "empty")
    _expect(r"missing required file \(expected sequential_data\.txt or sequential\.txt", "p5", tmp_path / "empty")
    _expect(r"missing required file \(expected <Name>\.txt and <Name>_item2attributes\.json", "s3rec", tmp_path / "empty")
    _expect(r"missing required files \(expected one of: u\.data \+ u\.item", "movielens", tmp_path / "empty")
    src = write_amazon(tmp_path / "b")
    os.remove(os.path.join(src, "meta_Beauty.json.gz"))
    _expect(r"meta_Beauty\.json\.gz: missing required file", "amazon2014", src)
    src = write_ml100k(tmp_path / "c")
    os.remove(os.path.join(src, "u.item"))
    _expect(r"missing required file u\.item", "movielens", src)
    _expect(r"no such file or directory", "p5", tmp_path / "nowhere")
