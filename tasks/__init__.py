"""SeqIO tasks and mixtures of recjax: the recommendation tasks (retrieval, ranking, rating) and the
auxiliary tasks of Cao et al. 2024 (MIM, MLM, BPR), for any prepared dataset.

    import tasks
    tasks.register_dataset(data_dir, "beauty", vocab_path)   # or from Gin, see gin/tasks/*.gin
    seqio.get_mixture_or_task("beauty_rec_aux").get_dataset(...)

The public API, what recjax's evaluation, infer, inspect and score use: registration and lookup
(`register_dataset`, `registered`, `get_mixture_or_task`, `mixture_members`, `kind_of`,
`dataset_of`; importing `tasks` needs neither SeqIO nor TensorFlow), the task
kinds (`tasks.kinds`: one module per kind, `TaskKind`), the example features' readers
(`candidates_and_positive`, `parse_rating`, `rating_metric_fn`) and the vocabulary helpers.
"""
from tasks import kinds
from tasks.examples import SPLITS, ExampleBuilder, TaskOptions
from tasks.kinds import TaskKind
from tasks.metric_fns import candidates_and_positive, parse_rating, rating_metric_fn
from tasks.registry import (RegisteredDataset, dataset_of, get_mixture_or_task, item_ids_record, kind_of,
                            mixture_members, mixture_suffixes, register_dataset, registered, registered_names, seqio_available,
                            task_kind, unknown_task_error)
from tasks.templates import TEMPLATES_VERSION
from recjax.items.vocabulary import load_tokenizer
from tasks.vocab import code_vocabulary, dataset_vocabulary, load_vocabulary, train_sentencepiece

__all__ = [
    "SPLITS", "TEMPLATES_VERSION", "ExampleBuilder", "RegisteredDataset", "TaskKind", "TaskOptions",
    "candidates_and_positive", "code_vocabulary", "dataset_of", "dataset_vocabulary", "get_mixture_or_task", "item_ids_record",
    "kind_of", "kinds", "load_tokenizer", "load_vocabulary", "mixture_members", "mixture_suffixes", "parse_rating", "rating_metric_fn",
    "register_dataset", "registered", "registered_names", "seqio_available", "task_kind", "train_sentencepiece",
    "unknown_task_error",
]
