"""A SQuAD JSON file of the wrong shape is one line naming the file, the record and the column, exit 2."""

from __future__ import annotations

import json
import textwrap

import pytest

from pofa_openvino.cli import main
from pofa_openvino.data.qa import read_squad_json
from pofa_openvino.data.text import read_texts
from pofa_openvino.errors import DataError

QA = {"id": "q1", "question": "Capital?", "answers": [{"text": "Paris", "answer_start": 0}]}
PARAGRAPH = {"context": "Paris is the capital of France.", "qas": [QA]}


def _squad(article: object = None, *, data: object = None) -> object:
    return {"version": "1.1", "data": [article or {"title": "t", "paragraphs": [PARAGRAPH]}] if data is None
            else data}


CASES = {
    "data a dict": (_squad(data={"paragraphs": []}), "column 'data': {\"paragraphs\": []} is an object, not a list"),
    "data a string": (_squad(data="x"), "column 'data': \"x\" is a string, not a list"),
    "top level a list": ([PARAGRAPH], "not a SQuAD JSON file (expected {\"data\": [{\"paragraphs\""),
    "no data": ({"version": "1.1"}, "the file holds an object without 'data'"),
    "article a list": (_squad(data=[[]]), "data[0]: [] is a list, not an object"),
    "paragraphs missing": (_squad({"title": "t"}), "data[0]: column 'paragraphs' is missing"),
    "paragraphs a dict": (_squad({"paragraphs": PARAGRAPH}), "data[0]: column 'paragraphs': {\"context\""),
    "paragraph a string": (_squad({"paragraphs": [PARAGRAPH, "p"]}),
                           "data[0].paragraphs[1]: \"p\" is a string, not an object"),
    "context missing": (_squad({"paragraphs": [{"qas": [QA]}]}), "data[0].paragraphs[0]: column 'context' is missing"),
    "context a list": (_squad({"paragraphs": [{**PARAGRAPH, "context": ["a"]}]}),
                       "data[0].paragraphs[0]: column 'context': [\"a\"] is a list, not a string"),
    "qas a dict": (_squad({"paragraphs": [{**PARAGRAPH, "qas": QA}]}), "data[0].paragraphs[0]: column 'qas': {"),
    "qa null": (_squad({"paragraphs": [{**PARAGRAPH, "qas": [QA, None]}]}),
                "data[0].paragraphs[0].qas[1]: null, not an object"),
    "answers a dict": (_squad({"paragraphs": [{**PARAGRAPH, "qas": [{**QA, "answers": {"text": "Paris"}}]}]}),
                       "qas[0]: column 'answers': {\"text\": \"Paris\"} is an object, not a list"),
    "answer_start a string": (
        _squad({"paragraphs": [PARAGRAPH, {**PARAGRAPH, "qas": [QA, {**QA, "answers": [
            {"text": "Paris", "answer_start": 0}, {"text": "Paris", "answer_start": "0"}]}]}]}),
        "data[0].paragraphs[1].qas[1].answers[1]: column 'answer_start': \"0\" is a string, not an integer"),
    "answer_start true": (_squad({"paragraphs": [{**PARAGRAPH, "qas": [{**QA, "answers": [
        {"text": "Paris", "answer_start": True}]}]}]}), "column 'answer_start': true is true or false, not an integer"),
    "answer_start a float": (_squad({"paragraphs": [{**PARAGRAPH, "qas": [{**QA, "answers": [
        {"text": "Paris", "answer_start": 0.5}]}]}]}), "column 'answer_start': 0.5 is a number, not an integer"),
    "answer text a number": (_squad({"paragraphs": [{**PARAGRAPH, "qas": [{**QA, "answers": [
        {"text": 7, "answer_start": 0}]}]}]}), "answers[0]: column 'text': 7 is an integer, not a string"),
    "is_impossible a string": (_squad({"paragraphs": [{**PARAGRAPH, "qas": [{**QA, "is_impossible": "no"}]}]}),
                               "qas[0]: column 'is_impossible': \"no\" is a string, not true or false"),
    "question missing": (_squad({"paragraphs": [{**PARAGRAPH, "qas": [{"id": "q1", "answers": QA["answers"]}]}]}),
                         "qas[0]: column 'question' is missing"),
    "id a list": (_squad({"paragraphs": [{**PARAGRAPH, "qas": [{**QA, "id": ["q1"]}]}]}),
                  "qas[0]: column 'id': [\"q1\"] is a list, not a string or an integer"),
    "long value shortened": (_squad(data={"x": "y" * 500}),
                             "column 'data': {\"x\": \"" + "y" * 30 + "... is an object"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_malformed_squad_file_names_the_record(case, tmp_path):
    content, message = CASES[case]
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(DataError) as info:
        read_squad_json(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text and len(text) < 300, text


@pytest.mark.parametrize("raw, message", [
    (b'{"data": [\n  {"paragraphs": [}\n]}', ":2: not valid JSON: Expecting value"),
    ('{"data": []}\n{"x": "caf\xe9"}'.encode("latin-1"), ":2: not UTF-8 text"),
])
def test_unreadable_json_names_the_line(tmp_path, raw, message):
    path = tmp_path / "squad.json"
    path.write_bytes(raw)
    with pytest.raises(DataError, match="^" + str(path).replace(".", r"\.") + message):
        read_squad_json(path)


def test_squad_as_pretraining_text_names_the_record_too(tmp_path):
    path = tmp_path / "texts.json"
    path.write_text(json.dumps(_squad({"paragraphs": [{"context": 5, "qas": []}]})))
    with pytest.raises(DataError, match=r"data\[0\]\.paragraphs\[0\]: column 'context': 5 is an integer"):
        read_texts(path, "text")


def test_a_malformed_squad_file_stops_the_run_with_one_line_and_exit_2(tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(CASES["answer_start a string"][0]))
    recipe = tmp_path / "qa.yaml"
    recipe.write_text(textwrap.dedent(f"""\
        name: qa
        task: question-answering
        model: {{name_or_path: {model}}}
        data: {{train_file: {path}, validation_file: {path}}}
        """))
    assert main(["--quiet", "run", str(recipe), "-o", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"{path}: data[0].paragraphs[1].qas[1].answers[1]: column 'answer_start': \"0\" is a string, "
                   "not an integer"), err
