"""Checks shared by the task tests (synthetic and Beauty)."""
import re

from tasks.examples import ExampleBuilder


def _held_out(dataset):
    """Per user the IDs no training sample may show: the validation and test items."""
    return [{dataset.item_ids[s[-2]], dataset.item_ids[s[-1]]} for s in dataset.sequences]


def _numbers_outside_titles(text: str) -> set[str]:
    """Item IDs a text names: numbers outside the "(item text)" parentheses, minus the template's
    own numbers ("1 to 5", "(N in all)")."""
    text = re.sub(r"\([^()]*\)", " ", text)
    text = re.sub(r"from 1 to 5|\(1 to 5\)|1 to 5", " ", text)
    return set(re.findall(r"(?<![\w.])\d+(?![\w.])", text))


def check_no_leakage(builder: ExampleBuilder, users, epochs=(0, 1)) -> int:
    """Asserts that no training example of user u shows u's validation or test item, in its text
    (inputs and targets) or its metadata. Returns the number of examples checked."""
    dataset = builder.dataset
    held_out = _held_out(dataset)
    rendered = [builder.item_texts[i] for i in range(dataset.num_items)]
    index = {item_id: i for i, item_id in enumerate(dataset.item_ids)}
    checked = 0
    for epoch in epochs:
        for task in builder.tasks():
            for user in users:
                forbidden = held_out[user]
                for row in builder.user_examples(task, "train", user, epoch=epoch, seed=11):
                    meta = set(row["history_ids"].split()) | set(row["candidate_ids"].split())
                    meta |= set(row["target_id"].split())
                    assert not meta & forbidden, (task, user, meta & forbidden)
                    if task == "mlm":
                        text = row["inputs_pretokenized"] + " " + row["targets_pretokenized"]
                    else:
                        text = row["inputs"] + " " + row["targets"]
                        assert not _numbers_outside_titles(row["inputs"]) & forbidden, (task, user, text)
                        if task != "rating":  # the other targets are item IDs
                            assert not set(row["targets"].split(", ")) & forbidden, (task, user, text)
                    for item_id in forbidden:
                        assert rendered[index[item_id]] not in text, (task, user, item_id)
                    checked += 1
    return checked
