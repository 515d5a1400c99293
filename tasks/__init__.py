"""SeqIO tasks and mixtures of recjax: the recommendation tasks (retrieval, ranking, rating) and the
auxiliary tasks of Cao et al. 2024 (MIM, MLM, BPR), for any prepared dataset.

    import tasks
    tasks.register_dataset(data_dir, "beauty", vocab_path)   # or from Gin, see gin/tasks/*.gin
    seqio.get_mixture_or_task("beauty_rec_aux").get_dataset(...)
"""
from tasks.examples import AUX_TASKS, REC_TASKS, SPLITS, TASK_KINDS, TaskOptions
from tasks.registry import (MIXTURE_SUFFIXES, RegisteredDataset, get_mixture_or_task, item_ids_record,
                            register_dataset, registered, task_kind)
from tasks.templates import TEMPLATES, TEMPLATES_VERSION
from tasks.vocab import dataset_vocabulary, load_vocabulary, train_sentencepiece

__all__ = [
    "AUX_TASKS", "MIXTURE_SUFFIXES", "REC_TASKS", "SPLITS", "TASK_KINDS", "TEMPLATES",
    "TEMPLATES_VERSION", "RegisteredDataset", "TaskOptions", "dataset_vocabulary",
    "get_mixture_or_task", "item_ids_record", "load_vocabulary", "register_dataset", "registered", "task_kind",
    "train_sentencepiece",
]
