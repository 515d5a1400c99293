"""Registers the tasks and mixtures of one prepared dataset (`tasks.register_dataset`).

Names, for a dataset registered as NAME:
  tasks     NAME_retrieval, NAME_ranking, NAME_rating (only with ratings), NAME_mim, NAME_mlm, NAME_bpr
  mixtures  NAME_rec      the recommendation tasks
            NAME_rec_aux  the paper's: recommendation + MIM + MLM + BPR
            NAME_rec_mim, NAME_rec_mlm, NAME_rec_bpr   ablations: recommendation + one auxiliary task
Every task has the splits train, validation, test. Features: `inputs`, `targets` (int32 token
ids with EOS, add_eos=True) and their `*_pretokenized` text, plus the metadata of
`tasks.examples` (`task`, `template`, `user`, `target_id`, `history_ids`, `candidate_ids`).

The registration itself (example builder, tokenizer, task and mixture names and rates) needs
neither SeqIO nor TensorFlow; where SeqIO is installed the same tasks and mixtures are also
registered with it (its TaskRegistry and MixtureRegistry: the default input path). Without it,
`recjax.grain_loader` reads the same registration.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable
from typing import Optional

import gin

from tasks import kinds
from tasks.examples import ExampleBuilder, TaskOptions
from recjax.items.vocabulary import DEFAULT_EXTRA_IDS, item_code_vocabulary, load_tokenizer, user_token_pieces
from tasks.vocab import (load_vocabulary,
                         sentinel_ids as find_sentinels)

DEFAULT_SHUFFLE_BUFFER = 1_000  # on top of the in-source shuffle of users and examples


def seqio_available() -> bool:
    """Whether SeqIO (and so TensorFlow) can be imported here."""
    try:
        import seqio  # noqa: F401
    except ImportError:
        return False
    return True


def mixture_suffixes() -> tuple[str, ...]:
    """rec, rec_aux, and rec_<kind> for each auxiliary kind."""
    return ("rec", "rec_aux") + tuple(f"rec_{aux}" for aux in kinds.names(auxiliary=True))


@dataclasses.dataclass
class RegisteredDataset:
    """What `register_dataset` registered: names, the builder (for inspection), the tokenizer and
    the mixtures' members with their rates."""

    name: str
    tasks: dict[str, str]  # task kind -> task name
    mixtures: dict[str, str]  # mixture suffix -> mixture name
    builder: ExampleBuilder
    data_dir: str
    vocab_file: str  # the SentencePiece model (with the item-code pieces of structured IDs)
    extra_ids: int  # sentinels seqio adds on top of vocab_file
    tokenizer: object  # sentencepiece processor: vocab_file + its sentinels
    members: dict[str, list[tuple[str, float]]]  # mixture name -> [(task name, rate)]
    seed: int  # the default seed of masks, negatives, templates and example order
    shuffle_buffer_size: Optional[int]  # None: the in-source shuffle only
    # users='per_process': (process_index, process_count) whose block of users the builder holds
    process_block: Optional[tuple[int, int]] = None

    @property
    def names(self) -> list[str]:
        return list(self.tasks.values()) + list(self.mixtures.values())

    @functools.cached_property
    def vocabulary(self):
        """seqio.SentencePieceVocabulary (the same ids as `tokenizer`; needs SeqIO)."""
        return load_vocabulary(self.vocab_file, extra_ids=self.extra_ids)

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.GetPieceSize())


_REGISTERED: dict[str, tuple[tuple, RegisteredDataset]] = {}


def _output_features(vocabulary):
    import seqio

    return {"inputs": seqio.Feature(vocabulary=vocabulary, add_eos=True),
            "targets": seqio.Feature(vocabulary=vocabulary, add_eos=True)}


def _check_rates(rates: dict[str, float] | None) -> dict[str, float]:
    out = {kind: 1.0 for kind in kinds.names()}
    for kind, rate in (rates or {}).items():
        if kind not in out:
            raise ValueError(f"tasks.register_dataset.mixture_rates: unknown task kind {kind!r}; "
                             f"expected some of {kinds.names()}")
        if not isinstance(rate, (int, float)) or rate <= 0:
            raise ValueError(f"tasks.register_dataset.mixture_rates[{kind!r}] must be a positive number, got {rate!r}")
        out[kind] = float(rate)
    return out


def _remove(name: str) -> None:
    import seqio

    seqio.TaskRegistry.remove(name)
    seqio.MixtureRegistry.remove(name)


@gin.configurable(module="tasks")
def register_dataset(data_dir: str = gin.REQUIRED, name: str = gin.REQUIRED,
                     vocab_path: str = gin.REQUIRED, *,
                     max_history: int = 20,
                     ranking_max_history: int = 8,
                     num_negatives: int = 99,
                     mim_mask_prob: float = 0.2,
                     mlm_noise_density: float = 0.15,
                     mlm_mean_noise_span_length: float = 3.0,
                     mlm_max_tokens: int = 128,
                     ranking_candidate_text: bool = False,
                     item_text: bool = True,
                     template_index: int | None = None,
                     input_form: str = "template",
                     user_tokens: int = 0,
                     users: str = "all",
                     mixture_rates: dict[str, float] | None = None,
                     seed: int = 0,
                     shuffle_buffer_size: Optional[int] = DEFAULT_SHUFFLE_BUFFER,
                     extra_ids: int = DEFAULT_EXTRA_IDS) -> RegisteredDataset:
    """Registers NAME_<task> tasks and NAME_rec* mixtures of the prepared dataset at `data_dir`.

    Options are those of `tasks.examples.TaskOptions` (history lengths, negatives, MIM mask
    probability, MLM noise, whether items show their text, `input_form`: retrieval inputs in words
    or as the history's codes alone; `user_tokens`: TIGER's hashed user tokens, codes form only). `vocab_path`: a local SentencePiece model (FLAN-T5's spiece.model, or one from
    `tasks.dataset_vocabulary`); a dataset with structured item IDs (`recjax index`) gets this
    vocabulary grown by its code pieces (`recjax.items.vocabulary.item_code_vocabulary`). `mixture_rates`: {task kind: rate} (default 1.0 each), used by
    every mixture that contains the task. `seed`: the default seed of masks, negatives, templates
    and example order when get_dataset gets none. `shuffle_buffer_size`: SeqIO's shuffle buffer on
    top of the source's own seeded shuffle of users and examples; None: the source's shuffle only
    (then the TensorFlow-free loader gives SeqIO's batches exactly). `users`: "all" (every process
    builds from every user and takes its share of the examples), or "per_process" (each process
    reads only its block of users from the dataset's ArrayRecord user records, `recjax prepare
    --records N`, and trains on their examples: the Grain loader only; no process holds every
    user). Calling again with the same arguments is a no-op; with other arguments it replaces the
    registration of NAME.
    """
    from recjax.data import load_prepared  # late: keeps `import tasks` light on data code

    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"tasks.register_dataset.name must be lower_snake_case, got {name!r}")
    block = None
    if users == "per_process":
        import jax

        block = (jax.process_index(), jax.process_count())
    elif users != "all":
        raise ValueError(f"tasks.register_dataset.users must be 'all' or 'per_process', got {users!r}")
    key = (str(data_dir), str(vocab_path), max_history, ranking_max_history, num_negatives, mim_mask_prob,
           mlm_noise_density, mlm_mean_noise_span_length, mlm_max_tokens, ranking_candidate_text, item_text, template_index, input_form, user_tokens,
           tuple(sorted((mixture_rates or {}).items())), seed, shuffle_buffer_size, extra_ids, block)
    if name in _REGISTERED and _REGISTERED[name][0] == key:
        return _REGISTERED[name][1]

    options = TaskOptions(max_history=max_history, ranking_max_history=ranking_max_history,
                          num_negatives=num_negatives, mim_mask_prob=mim_mask_prob,
                          mlm_noise_density=mlm_noise_density,
                          mlm_mean_noise_span_length=mlm_mean_noise_span_length,
                          mlm_max_tokens=mlm_max_tokens,
                          ranking_candidate_text=ranking_candidate_text, item_text=item_text,
                          template_index=template_index, input_form=input_form, user_tokens=user_tokens)
    rates = _check_rates(mixture_rates)
    if block is None:
        dataset = load_prepared(data_dir)
    else:
        dataset = load_prepared(data_dir, process_index=block[0], process_count=block[1])
    if user_tokens and not dataset.code_pieces:
        raise ValueError(f"{data_dir}: user_tokens need structured item IDs (their tokens follow the codes; run "
                         "`recjax index` on it)")
    if dataset.code_pieces:  # structured item IDs: their code tokens appended after the sentinels
        pieces = dataset.code_pieces + user_token_pieces(user_tokens)  # TIGER's user tokens after the codes
        vocab_file, vocab_extra = item_code_vocabulary(vocab_path, pieces, str(data_dir), extra_ids), 0
    else:
        vocab_file, vocab_extra = str(vocab_path), extra_ids
    tokenizer = load_tokenizer(vocab_file, vocab_extra)
    builder = ExampleBuilder(dataset, options, tokenizer=tokenizer, sentinel_ids=find_sentinels(tokenizer, extra_ids))

    task_names = {kind: f"{name}_{kind}" for kind in builder.tasks()}
    rec = [k for k in kinds.names(auxiliary=False) if k in task_names]
    auxiliary = [k for k in kinds.names(auxiliary=True) if k in task_names]
    member_kinds = {"rec": rec, "rec_aux": rec + auxiliary}
    member_kinds.update({f"rec_{aux}": rec + [aux] for aux in auxiliary})
    mixture_names = {suffix: f"{name}_{suffix}" for suffix in member_kinds}
    members = {mixture_names[suffix]: [(task_names[k], rates[k]) for k in kinds_]
               for suffix, kinds_ in member_kinds.items()}
    registered = RegisteredDataset(name, task_names, mixture_names, builder, str(data_dir), vocab_file, vocab_extra,
                                   tokenizer, members, int(seed), shuffle_buffer_size, block)
    if seqio_available():
        _register_with_seqio(registered)
    _REGISTERED[name] = (key, registered)
    return registered


def _register_with_seqio(registered: RegisteredDataset) -> None:
    """The same tasks and mixtures in SeqIO's registries."""
    import seqio

    from tasks.source import EpochDataSource

    features = _output_features(registered.vocabulary)
    valid_ids = registered.builder.dataset.item_ids
    for kind_name, task_name in registered.tasks.items():
        kind = kinds.get(kind_name)
        _remove(task_name)
        # The source yields token ids already (tokenized per chunk; MLM's span corruption works
        # on tokens), so EOS is all that is left to add. Auxiliary kinds have no metric fns:
        # their metrics are the recommendation tasks'.
        seqio.TaskRegistry.add(
            task_name, source=EpochDataSource(registered.builder, kind.name, registered.seed),
            output_features=features, preprocessors=[seqio.preprocessors.append_eos_after_trim],
            postprocess_fn=kind.postprocess_fn, metric_fns=kind.metric_fns(valid_ids),
            shuffle_buffer_size=registered.shuffle_buffer_size)
    for mixture_name, member_tasks in registered.members.items():
        _remove(mixture_name)
        seqio.MixtureRegistry.add(mixture_name, member_tasks)


def registered(name: str) -> RegisteredDataset:
    """The registration of dataset NAME (after `register_dataset`)."""
    if name not in _REGISTERED:
        raise ValueError(f"no dataset {name!r} registered (call tasks.register_dataset first); "
                         f"registered: {sorted(_REGISTERED) or 'none'}")
    return _REGISTERED[name][1]


def get_mixture_or_task(name: str):
    """seqio Task or Mixture NAME of a registered dataset, with a one-line error for an unknown one."""
    for _, entry in _REGISTERED.values():
        if name in entry.names:
            if not seqio_available():
                raise ValueError(f"{name}: SeqIO is not installed here; read the task with the TensorFlow-free "
                                 "loader (DatasetConfig.loader = 'grain')")
            import seqio

            return seqio.get_mixture_or_task(name)
    raise unknown_task_error(name)


def unknown_task_error(name: str, also_known: Iterable[str] = ()) -> ValueError:
    """The one error for a task or mixture name nobody registered: the registered names (here,
    and `also_known` ones such as other SeqIO tasks), or how to register a dataset's tasks."""
    ours = registered_names()
    others = sorted(set(also_known) - set(ours))
    if not ours and not others:
        return ValueError(f"unknown task or mixture {name!r}: no task is registered; include the "
                          f"dataset's gin/tasks/*.gin file (e.g. --gin_file=gin/tasks/beauty.gin), which "
                          f"registers its tasks")
    hint = ""
    if name.endswith("_rating") and name[:-len("_rating")] in _REGISTERED:
        hint = f" (dataset {name[:-len('_rating')]!r} has no ratings)"
    shown = ", ".join(ours) or "none of recjax's"
    if others:  # other SeqIO tasks (a T5X registry can hold hundreds): the first few
        shown += f"; other SeqIO tasks: {', '.join(others[:10])}" + (f" and {len(others) - 10} more" if len(others) > 10 else "")
    return ValueError(f"unknown task or mixture {name!r}{hint}; registered: {shown}")


def item_ids_record(name: str) -> dict | None:
    """What a checkpoint trained on task or mixture NAME must be served with: the dataset, its
    item-ID scheme and a hash of every item's ID text; None for a name not registered here."""
    from recjax.items.record import record_of

    for _, entry in _REGISTERED.values():
        if name in entry.names:
            return record_of(entry.builder.dataset, entry.name, entry.data_dir)
    return None


def task_kind(task_name: str) -> str:
    """NAME_<kind> -> kind name, for a task registered here."""
    return kind_of(task_name).name


def kind_of(task_name: str) -> kinds.TaskKind:
    """NAME_<kind> -> its TaskKind (templates, evaluation, metric fns), for a task registered here."""
    for _, entry in _REGISTERED.values():
        for kind, registered_name in entry.tasks.items():
            if registered_name == task_name:
                return kinds.get(kind)
    raise ValueError(f"{task_name!r} is not a task registered by tasks.register_dataset")


def registered_names() -> list[str]:
    """Every task and mixture name registered here, sorted."""
    return sorted(n for _, e in _REGISTERED.values() for n in e.names)


def mixture_members(name: str) -> list[tuple[str, float]]:
    """[(task name, rate)] of task or mixture NAME (a task: itself at rate 1), without SeqIO."""
    for _, entry in _REGISTERED.values():
        if name in entry.members:
            return list(entry.members[name])
        if name in entry.tasks.values():
            return [(name, 1.0)]
    raise unknown_task_error(name)


def dataset_of(task_name: str) -> RegisteredDataset:
    """The registered dataset a task NAME_<kind> belongs to."""
    for _, entry in _REGISTERED.values():
        if task_name in entry.tasks.values():
            return entry
    raise ValueError(f"{task_name!r} is not a task registered by tasks.register_dataset")
