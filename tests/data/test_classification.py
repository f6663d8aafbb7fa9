"""Local classification files: formats, label maps, and errors that name file, row and column."""

from __future__ import annotations

import pytest

from pofa_openvino.data.classification import load_classification, read_rows, read_table
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
@pytest.mark.parametrize("name", ["train.tsv", "dev.tsv"])
def test_shared_sst2_reads_exactly_as_unquoted_glue(shared_data, name):
    import csv

    path = shared_data / "sst2" / name
    with path.open(encoding="utf-8", newline="") as handle:
        expected = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    table = read_table(path)
    assert table.rows == expected and table.lines == list(range(2, len(expected) + 2))


TEXTS = ['she said "hi"\tthen left', "two\nlines, and a comma", '"all quoted"', "plain", 'a "quoted" word', '"']


@pytest.mark.parametrize("suffix, writer", [
    (".tsv", "csv"), (".csv", "csv"), (".tsv", "pandas"), (".csv", "pandas"),
])
def test_files_written_with_standard_quoting_read_back_exactly(tmp_path, suffix, writer):
    import csv

    import pandas

    path = tmp_path / f"quoted{suffix}"
    delimiter = "\t" if suffix == ".tsv" else ","
    labels = [str(i % 2) for i in range(len(TEXTS))]
    if writer == "pandas":
        pandas.DataFrame({"text": TEXTS, "label": labels}).to_csv(path, sep=delimiter, index=False)
    else:
        with path.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle, delimiter=delimiter).writerows([("text", "label"), *zip(TEXTS, labels, strict=True)])
    table = read_table(path)
    assert [row["text"] for row in table.rows] == TEXTS and [row["label"] for row in table.rows] == labels
    assert table.lines == [2, 3, 5, 6, 7, 8]  # the second text spans two lines


@pytest.mark.parametrize("body, texts", [
    ('a "quoted" word\t1\n"quoted" word\t0\n', ['a "quoted" word', '"quoted" word']),
    ('"quoted"\t1\nit "ends\t0\n"one" two\t1\n', ['"quoted"', 'it "ends', '"one" two']),  # one bad: all text
    ('"an open quote\t1\nthen\t0\n', ['"an open quote', 'then']),
    ('x\t"a\nb"\t1\n', ['x', 'b"']),  # quoted, it is one row of the wrong width
    ('"a ""b"""\t1\nc\t0\n', ['a "b"', 'c']),  # a whole file in standard quoting
])
def test_glue_lines_with_bare_quotes_read_as_text(tmp_path, body, texts):
    path = tmp_path / "glue.tsv"
    path.write_text("text\tlabel\n" + body)
    assert [row["text"] for row in read_rows(path)] == texts


@pytest.mark.parametrize("content, message", [
    ("text\tlabel\na\tb\t1\n", "row 2: 3 fields where the header has 2; a text holding a tab must be enclosed in "
                                  "double quotes"),
    ('text\tlabel\n"x"\t1\n"y" z\t0\ta\n', "row 3: 3 fields where the header has 2; a text holding a tab must be "
                                             "enclosed in double quotes (the file is read unquoted: row 3: '\\t' "
                                             "expected after '\"')"),
    ('text,label\n"two\nlines",1\nno,no,0\n', "row 4: 3 fields where the header has 2; a text holding a comma"),
    ("text\tlabel\n" + "x" * 200_000 + "\t1\n", "row 2: field larger than field limit"),
])
def test_rows_of_another_width_are_named_by_their_line(tmp_path, content, message):
    path = tmp_path / ("train.csv" if "," in content.split("\n")[0] else "train.tsv")
    path.write_text(content)
    with pytest.raises(DataError) as info:
        read_table(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value), str(info.value)


def test_a_bad_row_after_a_multi_line_text_is_named_by_its_line(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text('text\tlabel\n"one\ntwo\nthree"\t1\nok\t0\n\t1\n')
    with pytest.raises(DataError, match="row 6: column 'text' is empty"):
        load_classification(DataSection(train_file=str(path), validation_file=str(path)))


@pytest.mark.parametrize("given", [None, ["neg", "pos"]])
def test_labels_seen_only_in_validation_are_refused(tmp_path, given):
    train, dev = tmp_path / "train.tsv", tmp_path / "dev.tsv"
    train.write_text("text\tlabel\ngood\tpos\nbad\tneg\n")
    dev.write_text("text\tlabel\nfine\tpos\nmeh\tneutral\n")
    with pytest.raises(DataError) as info:
        load_classification(DataSection(train_file=str(train), validation_file=str(dev), labels=given))
    source = "data.labels" if given else "the labels of the training file train.tsv"
    assert str(info.value) == f"{dev}: row 3: column 'label': label 'neutral' is not one of neg, pos ({source})"


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
