"""Local classification files: formats, label maps, and errors that name file, row and column."""

from __future__ import annotations

import pytest

from pofa_openvino.data.classification import load_classification, read_rows
from pofa_openvino.errors import DataError
from pofa_openvino.recipe import DataSection


def _data(tmp_path, train: str, suffix: str = ".tsv", **kwargs) -> DataSection:
    path = tmp_path / f"train{suffix}"
    path.write_text(train)
    return DataSection(train_file=str(path), validation_file=str(path), **kwargs)


def test_string_labels_become_a_sorted_label_map(tmp_path):
    data = load_classification(_data(tmp_path, "text\tlabel\ngood\tpos\nbad\tneg\n"))
    assert data.labels == ["neg", "pos"]
    assert [e.label for e in data.train] == [1, 0]


def test_sentence_pairs_from_jsonl(tmp_path):
    rows = '{"q": "is it", "s": "it is", "y": 1}\n{"q": "a", "s": "b", "y": 0}\n'
    data = load_classification(_data(tmp_path, rows, ".jsonl", text_columns=["q", "s"], label_column="y"))
    assert data.train[0].texts == ("is it", "it is") and data.labels == ["0", "1"]


@pytest.mark.parametrize("content, message", [
    ("sentence\tlabel\nok\t1\n", "row 2: column 'text' is missing; the file has sentence, label"),
    ("text\tlabel\nok\t1\n\t0\n", "row 3: column 'text' is empty"),
    ("text\tlabel\nok\t1\nno\t7\n", "row 3: column 'label': label '7' is not one of 0, 1"),
    ("text\tlabel\n", "the file has no data rows"),
])
def test_bad_rows_are_named(tmp_path, content, message):
    section = _data(tmp_path, content, labels=["0", "1"])
    with pytest.raises(DataError) as info:
        load_classification(section)
    assert str(info.value).startswith(str(tmp_path / "train.tsv")) and message in str(info.value)


@pytest.mark.parametrize("content, suffix, message", [
    ("text\tlabel\nok\tpos\nfine\tpos\n", ".tsv", "every training row has the label 'pos'"),
    ("text\tlabel\nok\t0\nfine\t99999\n", ".tsv", "integer labels are class ids 0..N-1, the file has 0, 99999"),
    ("text\tlabel\nok\t1\nfine\t2\n", ".tsv", "the file has 1, 2"),
    ('[{"text": "a", "label": 1}]\n', ".jsonl", ":1: a list, not a JSON object"),
    ("text\tlabel\ncaf\xe9\t1\n", ".tsv", "train.tsv:2: not UTF-8 text"),
])
def test_degenerate_and_unreadable_files_are_refused_with_the_reason(tmp_path, content, suffix, message):
    path = tmp_path / f"train{suffix}"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(DataError, match=r"^" + str(path).replace(".", r"\.")) as info:
        load_classification(DataSection(train_file=str(path), validation_file=str(path)))
    assert message in str(info.value)


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes("\ufefftext,label\ngood,pos\nbad,neg\n".encode())
    assert read_rows(path)[0] == {"text": "good", "label": "pos"}


def test_a_label_listed_twice_is_a_recipe_error():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="'pos' listed more than once"):
        DataSection(dataset="builtin:sentiment", labels=["pos", "neg", "pos"])


@pytest.mark.needs_shared_data
def test_shared_sst2_has_the_glue_columns(shared_data):
    rows = read_rows(shared_data / "sst2" / "dev.tsv")
    assert len(rows) == 872 and set(rows[0]) == {"text", "label"}
    data = load_classification(DataSection(train_file=str(shared_data / "sst2" / "dev.tsv"),
                                           validation_file=str(shared_data / "sst2" / "dev.tsv")))
    assert data.labels == ["0", "1"] and len(data.eval["validation"]) == 872


def test_builtin_sentiment_is_deterministic_and_balanced():
    from pofa_openvino.data.synthetic import sentiment

    first, second = sentiment(), sentiment()
    assert first == second
    train, evaluation = first
    assert not {e.texts for e in train} & {e.texts for e in evaluation}
    assert 0.4 < sum(e.label for e in train) / len(train) < 0.6


def _hub_mirror(root, task: str, splits: dict[str, dict[str, list]]) -> str:
    """A local directory laid out like the hub's nyu-mll/glue (README configs + parquet per split)."""
    import datasets

    configs = [f"- config_name: {task}", "  data_files:"]
    for split, columns in splits.items():
        datasets.Dataset.from_dict(columns).to_parquet(root / task / f"{split}-00000-of-00001.parquet")
        configs += [f"  - split: {split}", f"    path: {task}/{split}-*"]
    (root / "README.md").write_text("---\nconfigs:\n" + "\n".join(configs) + "\n---\n")
    return f"{root}/{task}"


@pytest.mark.parametrize("task, columns, eval_splits, labels", [
    ("sst2", {"sentence": ["a fine film", "dull"]}, ["validation"], ["negative", "positive"]),
    ("mnli", {"premise": ["a man sleeps", "it rains"], "hypothesis": ["he rests", "it is dry"]},
     ["validation_matched", "validation_mismatched"], ["entailment", "neutral", "contradiction"]),
    ("qqp", {"question1": ["how old?", "why?"], "question2": ["what age?", "where?"]}, ["validation"],
     ["not_duplicate", "duplicate"]),
    ("qnli", {"question": ["who?", "when?"], "sentence": ["Ann did.", "It rained."]}, ["validation"],
     ["entailment", "not_entailment"]),
])
def test_glue_tasks_load_through_datasets_with_the_hub_columns(tmp_path, task, columns, eval_splits, labels):
    rows = {**columns, "label": [1, 0], "idx": [0, 1]}
    dataset = _hub_mirror(tmp_path / "glue", task, {"train": rows, **{split: rows for split in eval_splits}})
    data = load_classification(DataSection(dataset=dataset))
    assert list(data.eval) == eval_splits and data.labels == labels
    assert data.train[0].texts == tuple(values[0] for values in columns.values()) and data.train[0].label == 1
    assert data.metric == ("f1" if task == "qqp" else "accuracy")


def test_an_unknown_glue_task_names_the_valid_ones(tmp_path):
    with pytest.raises(DataError, match="glue/sst2, glue/mnli, glue/qqp, glue/qnli"):
        load_classification(DataSection(dataset="glue/cola"))


def test_the_tiny_tokenizer_knows_its_words(tiny_bert, sentiment_words):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    assert tokenizer.unk_token not in tokenizer.tokenize(" ".join(sentiment_words) + " Normandy, 10th")


def test_a_long_label_list_is_shortened_in_the_message(tmp_path):
    labels = [f"intent_{i:03d}" for i in range(77)]
    rows = "text\tlabel\n" + "".join(f"t{i}\t{name}\n" for i, name in enumerate(labels)) + "odd\tnope\n"
    with pytest.raises(DataError) as info:
        load_classification(_data(tmp_path, rows, labels=labels))
    assert "intent_009, ... (77 in all)" in str(info.value) and len(str(info.value)) < 400
