"""Builds the examples of every task from a prepared dataset, in Python, one epoch at a time.

Randomness (template choice, masks, negatives, candidate order, example order) comes from numpy
streams keyed by `(seed, epoch, split, task, user)`, so a sample is fresh each epoch and the same
given the seed, whatever the sharding. Evaluation splits always use epoch 0 (fixed negatives,
seeded per user).

Leakage rule: a training example of user u is built from `train_sequences()[u]` (= seq[:-2])
only; negatives are drawn from the items u never interacted with (so never u's validation or test
item); rating records of u's validation and test items are left out of the rating train split.

What each kind builds lives in its module (tasks/kinds/); this module holds what they share:
the epochs and random streams, the shown history, the negative pool, the leave-one-out cases and
the row format. Per user and epoch, a kind counted by "prefixes" (retrieval, ranking, BPR) has one
train example per prefix of the training sequence (history t[:p], target t[p], p >= 1) and one
validation / test example (leave-one-out: valid target seq[-2], test target seq[-1]); "users"
(MIM, MLM) one example over the most recent `max_history` items; "rating_records" one example per
record of P5's 80/10/10 rating split.
"""
from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator

import numpy as np

from tasks import kinds, span_corruption, templates
from tasks.kinds import TaskKind

SPLITS = ("train", "validation", "test")
INPUT_FORMS = ("template", "codes")

_SPLIT_CODE = {s: i for i, s in enumerate(SPLITS)}
_LOO_SPLIT = {"validation": "valid", "test": "test"}
_RATING_SPLIT = {"train": "train", "validation": "valid", "test": "test"}
# Stream id of the example-order permutation. User streams are keyed by the global user index and
# skip this value (user_stream): datasets of more users than this would otherwise draw one user's
# examples from the order permutation's stream; below it every key is the user index, as ever.
_ORDER_STREAM = 1_000_003
EVAL_EPOCH = 0


def user_stream(user: int) -> int:
    """The random stream of a global user index: the index itself, past _ORDER_STREAM one more."""
    return user + (user >= _ORDER_STREAM)

# Features every example carries besides inputs/targets (the evaluator and the tests read them):
# task kind, template id, user index, target item ID(s), the user's full history IDs (for
# exclusion from retrieval), the candidate IDs in the order shown (ranking, BPR).
META_STRING_FEATURES = ("task", "template", "target_id", "history_ids", "candidate_ids")
META_INT_FEATURES = ("user",)


@dataclasses.dataclass(frozen=True)
class TaskOptions:
    """How examples are built (set from Gin through `tasks.register_dataset`)."""

    max_history: int = 20  # items of history shown, the most recent ones
    # Ranking shows 1 + num_negatives candidate IDs (~350 T5 tokens for 100) besides the history:
    # a shorter history keeps the whole input within 512 tokens (trimming would cut candidates).
    ranking_max_history: int = 8
    num_negatives: int = 99  # ranking: candidates = 1 positive + num_negatives
    mim_mask_prob: float = 0.2  # MIM: probability of masking each history item (>= 1 masked)
    mlm_noise_density: float = span_corruption.NOISE_DENSITY
    mlm_mean_noise_span_length: float = span_corruption.MEAN_NOISE_SPAN_LENGTH
    # MLM corrupts the most recent mlm_max_tokens tokens of the history text: targets stay
    # ~0.2 * 128 + 1 tokens, within the usual targets length of 32.
    mlm_max_tokens: int = 128
    ranking_candidate_text: bool = False  # ranking candidates as "ID (text)" instead of IDs only
    item_text: bool = True  # items in inputs as "ID (text)" (Cao et al.); False: the ID alone
    template_index: int | None = None  # one fixed phrasing for all examples; None: seeded choice
    # "template": inputs in words (the templates); "codes": item IDs and sentinels alone, no words
    # (retrieval: the history's IDs, TIGER's input; the other kinds: templates.CODE_MARKERS; with
    # `tasks.code_vocabulary`, nothing but code tokens).
    input_form: str = "template"
    # TIGER's user tokens (codes form, retrieval only; 0: none, as in the paper recjax reproduces):
    # each user's original ID hashed into this many tokens `<u_k>`, put before the history's codes
    # (recjax.items.vocabulary.user_token). `recjax infer` requests carry no user: no token there.
    user_tokens: int = 0
    users_per_chunk: int = 256  # users whose examples are generated (and shuffled) together

    def __post_init__(self):
        for name in ("max_history", "ranking_max_history", "mlm_max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {self.num_negatives}")
        if not 0.0 < self.mim_mask_prob <= 1.0:
            raise ValueError(f"mim_mask_prob must be in (0, 1], got {self.mim_mask_prob}")
        if not 0.0 < self.mlm_noise_density < 1.0:
            raise ValueError(f"mlm_noise_density must be in (0, 1), got {self.mlm_noise_density}")
        if self.mlm_mean_noise_span_length < 1.0:
            raise ValueError(f"mlm_mean_noise_span_length must be >= 1, got {self.mlm_mean_noise_span_length}")
        if self.input_form not in INPUT_FORMS:
            raise ValueError(f"input_form must be one of {INPUT_FORMS}, got {self.input_form!r}")
        if not isinstance(self.user_tokens, int) or self.user_tokens < 0:
            raise ValueError(f"user_tokens must be an int >= 0, got {self.user_tokens!r}")
        if self.user_tokens and self.input_form != "codes":
            raise ValueError("user_tokens needs input_form='codes' (the template form names no user)")
        if self.users_per_chunk < 1:
            raise ValueError(f"users_per_chunk must be >= 1, got {self.users_per_chunk}")


def token_pairs(chunk: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """`ExampleBuilder.tokenize` columns -> one {"inputs", "targets"} int32 id array pair per example."""
    split = {key: np.split(chunk[key + "_values"], np.cumsum(chunk[key + "_lengths"])[:-1])
             for key in ("inputs", "targets")}
    return [{"inputs": i, "targets": t} for i, t in zip(split["inputs"], split["targets"])]


class ExampleBuilder:
    """Examples of one prepared dataset. `tokenizer` (a sentencepiece processor with the seqio
    sentinels) and `sentinel_ids` are needed for MLM only."""

    def __init__(self, dataset, options: TaskOptions = TaskOptions(), tokenizer=None,
                 sentinel_ids: np.ndarray | None = None):
        self.dataset = dataset
        self.options = options
        self.num_items = dataset.num_items
        self.num_users = dataset.num_users
        # A process's block of users (load_prepared(..., process_index=...)): local user u is global
        # user user_offset + u, whose draws (negatives, masks, templates) are the same in any block.
        self.user_offset = int(getattr(dataset, "user_offset", 0))
        self.item_ids = list(dataset.item_ids)
        self.id_array = np.array(dataset.item_ids, dtype=object)  # fancy-indexable for joins
        self.item_texts = ([templates.item_text(i, t) for i, t in zip(dataset.item_ids, dataset.item_titles)]
                           if options.item_text else list(dataset.item_ids))
        self.full = dataset.sequences
        self.train = dataset.train_sequences()
        # per split, per user: the (history, target) evaluation cases (one a user under
        # leave-last-out; every interaction of the split under a timestamp split)
        self.eval_cases = {s: self._cases_by_user(_LOO_SPLIT[s]) for s in ("validation", "test")}
        self.has_ratings = dataset.ratings is not None and dataset.rating_splits is not None
        self._ratings_by_user: dict[str, list[list[tuple[int, float]]]] = {}
        self._counts: dict[tuple[str, str], np.ndarray] = {}
        self.tokenizer = tokenizer
        self.sentinel_ids = sentinel_ids
        if dataset.interaction_splits is None and min(len(s) for s in self.full) < 3:
            short = int(np.argmin([len(s) for s in self.full]))
            raise ValueError(f"dataset {dataset.name!r}: user {short} has {len(self.full[short])} "
                             "interactions; leave-one-out needs >= 3 per user")
        # Ranking needs num_negatives items the user never touched.
        longest = max(len(s) for s in self.full)
        if self.num_items - longest < options.num_negatives:
            raise ValueError(
                f"dataset {dataset.name!r}: num_negatives={options.num_negatives} but a user with "
                f"{longest} of the {self.num_items} items has only {self.num_items - longest} "
                "non-interacted items; lower tasks.register_dataset.num_negatives")

    def _cases_by_user(self, split: str) -> list[list[tuple[np.ndarray, int]]]:
        users, histories, targets = self.dataset.next_item_cases(split)
        per_user: list[list[tuple[np.ndarray, int]]] = [[] for _ in range(self.num_users)]
        for u, history, target in zip(users.tolist(), histories, targets.tolist()):
            per_user[u].append((history, target))
        return per_user

    # ------------------------------------------------------------------ sizes and streams

    def tasks(self) -> tuple[str, ...]:
        """The task kinds this dataset supports (those that need ratings only where ratings exist)."""
        return tuple(k.name for k in kinds.all_kinds() if not k.needs_ratings or self.has_ratings)

    def num_examples(self, task: str, split: str) -> int:
        """Examples in one epoch of (task, split) (the same for every epoch)."""
        return int(self.examples_per_user(task, split).sum())

    def examples_per_user(self, task: str, split: str) -> np.ndarray:
        """[num_users] int64: how many examples each user has in one epoch of (task, split), known
        without building them (what a random-access source locates an example by)."""
        kind = self._check(task, split)
        if (task, split) in self._counts:
            return self._counts[task, split]
        if kind.count == "rating_records":
            counts = np.array([len(r) for r in self.rating_records(split)], np.int64)
        elif split != "train":  # one case a user, or (timestamp split) as many as the split holds
            cases = self.eval_cases[split]
            counts = np.array([min(len(c), 1) if kind.count == "users" else len(c) for c in cases], np.int64)
        elif kind.count == "users":
            counts = np.ones(self.num_users, np.int64)
        else:
            counts = np.array([max(len(t) - 1, 0) for t in self.train], np.int64)
        self._counts[task, split] = counts
        return counts

    def _rng(self, seed: int, epoch: int, split: str, kind: TaskKind, stream: int) -> np.random.Generator:
        return np.random.default_rng([seed, epoch, _SPLIT_CODE[split], kind.stream, stream])

    def _check(self, task: str, split: str) -> TaskKind:
        if task not in self.tasks():
            raise ValueError(f"unknown task kind {task!r} for dataset {self.dataset.name!r}; "
                             f"expected one of {self.tasks()}")
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return kinds.get(task)

    # ------------------------------------------------------------------ epochs

    def epoch_blocks(self, task: str, split: str, epoch: int, seed: int, shuffle: bool,
                     shard_index: int = 0, num_shards: int = 1) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """The blocks of one epoch, in order, without building them: (users, row order), where the
        block's rows are its users' examples (built together) taken in `row order` (None: as
        built). Users `shard_index::num_shards`, `users_per_chunk` to a block; with `shuffle`,
        users and the rows inside a block come in a seeded order. Blocks without rows are left
        out. `iter_chunks` builds them in this order; a random-access source builds any one."""
        kind = self._check(task, split)
        if split != "train":
            epoch = EVAL_EPOCH
        counts = self.examples_per_user(task, split)
        users = np.arange(self.num_users)[shard_index::num_shards]
        order_rng = self._rng(seed, epoch, split, kind, _ORDER_STREAM)
        if shuffle:
            users = order_rng.permutation(users)
        step = self.options.users_per_chunk
        blocks = []
        for start in range(0, len(users), step):
            block = users[start:start + step]
            n = int(counts[block].sum())
            if n:
                blocks.append((block, order_rng.permutation(n) if shuffle else None))
        return blocks

    def build_block(self, task: str, split: str, epoch: int, seed: int, users: np.ndarray,
                    order: np.ndarray | None) -> dict[str, np.ndarray]:
        """One block of `epoch_blocks` as column chunks ({feature: [n] array})."""
        kind = self._check(task, split)
        if split != "train":
            epoch = EVAL_EPOCH
        rows = kind.build(self, split, [(int(u), self._rng(seed, epoch, split, kind, user_stream(self.user_offset + int(u))))
                                        for u in users])
        expected = int(self.examples_per_user(task, split)[users].sum())
        if len(rows) != expected:  # examples_per_user must say what build does: sources locate rows by it
            raise AssertionError(f"task kind {kind.name!r} built {len(rows)} {split} rows for {len(users)} users; "
                                 f"examples_per_user says {expected}")
        if order is not None:
            rows = [rows[i] for i in order]
        return self._columns(kind, rows)

    def iter_chunks(self, task: str, split: str, epoch: int, seed: int, shuffle: bool,
                    shard_index: int = 0, num_shards: int = 1) -> Iterator[dict[str, np.ndarray]]:
        """One epoch of (task, split) as column chunks ({feature: [n] array}): the blocks of
        `epoch_blocks`, built in order."""
        for users, order in self.epoch_blocks(task, split, epoch, seed, shuffle, shard_index, num_shards):
            yield self.build_block(task, split, epoch, seed, users, order)

    def token_chunks(self, task: str, split: str, epoch: int, seed: int, shuffle: bool,
                     shard_index: int = 0, num_shards: int = 1) -> Iterator[dict[str, np.ndarray]]:
        """`iter_chunks` with `inputs` / `targets` as token ids (`tokenize`)."""
        for chunk in self.iter_chunks(task, split, epoch, seed, shuffle, shard_index, num_shards):
            yield self.tokenize(task, chunk)

    def tokenize(self, task: str, chunk: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A column chunk with `inputs` / `targets` as token ids: `<key>_values` (int32, flat),
        `<key>_lengths` (int64 [n]) and the text as `<key>_pretokenized`. Every path (SeqIO's
        source, the Grain loader, evaluation) tokenizes here, with this builder's SentencePiece
        processor (`tasks.load_tokenizer`, what `recjax infer` and `score` use too), so training
        and serving see the same ids."""
        kind = kinds.get(task)
        if self.tokenizer is None:
            raise ValueError("token_chunks needs the builder's tokenizer (register the dataset with a vocabulary)")
        if not kind.tokenized:
            for key in ("inputs", "targets"):
                texts = chunk.pop(key)
                ids = self.tokenizer.encode([str(t) for t in texts])
                chunk[key + "_values"] = np.fromiter(itertools.chain.from_iterable(ids), np.int32)
                chunk[key + "_lengths"] = np.array([len(i) for i in ids], np.int64)
                chunk[key + "_pretokenized"] = texts
        return chunk

    def _columns(self, kind: TaskKind, rows: list[dict]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for key in META_STRING_FEATURES:
            out[key] = np.array([r[key] for r in rows], dtype=object)
        out["user"] = np.array([r["user"] for r in rows], dtype=np.int32)
        if kind.tokenized:
            for key in ("inputs", "targets"):
                out[key + "_values"] = np.concatenate([r[key] for r in rows]).astype(np.int32)
                out[key + "_lengths"] = np.array([len(r[key]) for r in rows], dtype=np.int64)
                out[key + "_pretokenized"] = np.array([r[key + "_pretokenized"] for r in rows], dtype=object)
        else:
            out["inputs"] = np.array([r["inputs"] for r in rows], dtype=object)
            out["targets"] = np.array([r["targets"] for r in rows], dtype=object)
        return out

    # ------------------------------------------------------------------ per user

    def user_examples(self, task: str, split: str, user: int, epoch: int, seed: int) -> list[dict]:
        """All examples of `user` for (task, split) in epoch `epoch` (deterministic)."""
        kind = self._check(task, split)
        epoch = EVAL_EPOCH if split != "train" else epoch
        return kind.build(self, split, [(user, self._rng(seed, epoch, split, kind, user_stream(self.user_offset + user)))])

    # ------------------------------------------------------------------ what the kinds share

    def choose_template(self, kind: TaskKind, rng: np.random.Generator) -> templates.Template:
        """The example's phrasing: `template_index` if fixed, else drawn from its stream."""
        index = self.options.template_index
        if index is None:
            index = int(rng.integers(len(kind.templates)))
        return kind.templates[index % len(kind.templates)]

    def history_text(self, items: np.ndarray, max_items: int | None = None) -> str:
        """The shown history: the most recent max_history items, oldest first."""
        return templates.history_text([self.item_texts[i] for i in self._recent(items, max_items)])

    @property
    def codes_form(self) -> bool:
        return self.options.input_form == "codes"

    def _recent(self, items: np.ndarray, max_items: int | None = None) -> np.ndarray:
        """The shown part of a history: its most recent max_items (default max_history) items."""
        max_items = max_items or self.options.max_history
        return items[len(items) - min(len(items), max_items):]

    def history_codes(self, items: np.ndarray, max_items: int | None = None) -> str:
        """The codes form's history: the most recent max_history items' IDs, space-separated."""
        return " ".join(self.item_ids[i] for i in self._recent(items, max_items))

    def codes_inputs(self, kind: str, history: np.ndarray, items, max_items: int | None = None) -> str:
        """A codes-form input that shows items beside the history (ranking's candidates, BPR's
        pair): the kind's marker, the history's codes, the separator, the items' codes."""
        return (f"{templates.CODE_MARKERS[kind]} {self.history_codes(history, max_items)} "
                f"{templates.CODE_SEPARATOR} {self.ids(items)}")

    def user_token(self, user: int) -> str:
        """TIGER's token of `user` (TaskOptions.user_tokens): its original ID hashed, else its index."""
        from recjax.items.vocabulary import user_token

        originals = self.dataset.user_original_ids
        return user_token(originals[user] if originals else str(user), self.options.user_tokens)

    def retrieval_inputs(self, items, template_index: int = 0, titles=None) -> str:
        """The retrieval input of a history of item indices with template `template_index` (what
        `recjax infer` sends the model; see tasks.kinds.retrieval.render_inputs)."""
        from tasks.kinds import retrieval

        return retrieval.render_inputs(self, items, retrieval.TEMPLATES[template_index % len(retrieval.TEMPLATES)],
                                       titles)

    def ids(self, items) -> str:
        """Item indices -> their IDs joined by spaces (the `*_ids` features)."""
        return " ".join(self.id_array[np.asarray(items, dtype=np.int64)].tolist())

    def negative_pool(self, user: int) -> np.ndarray:
        """Items `user` never interacted with (in any split): where negatives come from."""
        allowed = np.ones(self.num_items, dtype=bool)
        allowed[self.full[user]] = False
        return np.flatnonzero(allowed).astype(np.int32)

    def next_item_cases(self, split: str, user: int) -> list[tuple[np.ndarray, int]]:
        """(history, target) pairs: every prefix of the training sequence, or the evaluation cases."""
        if split == "train":
            t = self.train[user]
            return [(t[:p], int(t[p])) for p in range(1, len(t))]
        return self.eval_cases[split][user]

    def row(self, kind: TaskKind, template, user, inputs, targets, target_id="", history=(), candidates=()) -> dict:
        """One example: inputs/targets and the metadata features (META_*_FEATURES)."""
        return {"task": kind.name, "template": template.id, "user": self.user_offset + user, "inputs": inputs,
                "targets": targets, "target_id": target_id, "history_ids": self.ids(history),
                "candidate_ids": self.ids(candidates)}

    def cloze_sequence(self, split: str, user: int) -> np.ndarray:
        """MIM/MLM sequence, its most recent max_history items: train -> the training sequence;
        validation/test -> the (last) evaluation case's history + its target."""
        if split == "train":
            seq = self.train[user]
        else:
            history, target = self.eval_cases[split][user][-1]
            seq = np.append(history, target).astype(np.int32)
        return self._recent(seq)

    def rating_records(self, split: str) -> list[list[tuple[int, float]]]:
        """Per user [(item, rating)] of the rating split; the train split without the user's
        held-out (validation and test) items: they must not leak into training."""
        if split not in self._ratings_by_user:
            users, items, ratings = self.dataset.rating_split(_RATING_SPLIT[split])
            per_user: list[list[tuple[int, float]]] = [[] for _ in range(self.num_users)]
            for u, i, r in zip(users.tolist(), items.tolist(), ratings.tolist()):
                if split == "train" and i in self.full[u][len(self.train[u]):]:
                    continue
                per_user[u].append((i, r))
            self._ratings_by_user[split] = per_user
        return self._ratings_by_user[split]
