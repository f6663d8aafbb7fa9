"""Question answering: SQuAD loading and its errors, features with doc stride, n-best span search,
and EM/F1 with the official v1.1 normalisation, checked by hand on the shared SQuAD dev subset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pofa_openvino.data.qa import QAExample, best_spans, features, read_squad_json
from pofa_openvino.errors import DataError
from pofa_openvino.metrics import exact_match, normalize_answer, squad_metrics, token_f1


def test_normalisation_is_squad_v1_1s():
    assert normalize_answer("The  10th and 11th Centuries!") == "10th and 11th centuries"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert exact_match("the Denver Broncos", "Denver Broncos.") == 1.0
    assert token_f1("first half", "the first half of the 10th century") == pytest.approx(2 * 0.4 / 1.4)


@pytest.mark.needs_shared_data
def test_em_and_f1_on_hand_checked_dev_questions(shared_data):
    golds = {e.id: e.answers for e in read_squad_json(shared_data / "squad" / "dev-subset.json")}
    predictions = {
        "56ddde6b9a695914005b9629": "the 10th and 11th centuries",  # = "10th and 11th centuries" after norm.
        "56ddde6b9a695914005b962c": "first half",  # best gold "the first half of the 10th century": F1 4/7
        "56ddde6b9a695914005b962a": "Denmark and Norway",  # "Denmark, Iceland and Norway": P 1, R 3/4, F1 6/7
        "56ddde6b9a695914005b962b": "King Charles III",  # gold "Rollo": nothing in common
    }
    scores = squad_metrics(predictions, ((qid, golds[qid]) for qid in predictions))
    assert scores == {"exact_match": 0.25, "f1": round((1 + 4 / 7 + 6 / 7 + 0) / 4, 6)}


@pytest.mark.needs_shared_data
def test_the_dev_subset_keeps_only_answerable_questions(shared_data):
    path = shared_data / "squad" / "dev-subset.json"
    raw = json.loads(path.read_text())
    answerable = sum(not q["is_impossible"] for a in raw["data"] for p in a["paragraphs"] for q in p["qas"])
    examples = read_squad_json(path)
    assert len(examples) == answerable and 0 < answerable < 1407
    assert all(e.context[e.answer_starts[0]:].startswith(e.answers[0]) for e in examples)


def _first_article(shared_data) -> list[QAExample]:
    return [e for e in read_squad_json(shared_data / "squad" / "dev-subset.json") if e.id.startswith("56dd")]


@pytest.mark.needs_shared_data
def test_training_features_point_at_the_answer_in_every_window(shared_data, tiny_bert):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    examples = _first_article(shared_data)
    train = features(tokenizer, examples, 128, 32, training=True)
    evaluation = features(tokenizer, examples, 128, 32, training=False)
    assert len(train) == len(evaluation) > 3 * len(examples)  # long contexts: several windows each
    inside = 0
    for train_feature, eval_feature in zip(train, evaluation, strict=True):
        example = examples[eval_feature["example_index"]]
        start, end = train_feature["start_positions"], train_feature["end_positions"]
        if (start, end) == (0, 0):
            continue  # the answer is not inside this window: the target is [CLS]
        offsets = eval_feature["offset_mapping"]
        span = example.context[offsets[start][0]:offsets[end][1]]
        assert normalize_answer(span) == normalize_answer(example.answers[0]), (example.id, span)
        inside += 1
    assert inside >= len(examples)


@pytest.mark.needs_shared_data
def test_span_search_finds_the_answer_across_windows_and_honours_max_answer_length(shared_data, tiny_bert):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    examples = _first_article(shared_data)
    items = features(tokenizer, examples, 128, 32, training=False)
    starts, ends, planted = [], [], set()
    for item in items:
        example = examples[item["example_index"]]
        start_char = example.answer_starts[0]
        end_char = start_char + len(example.answers[0])
        s_logits, e_logits = np.zeros(128 + 7), np.zeros(128 + 7)  # rows keep their batch's padding
        positions = {o[0]: i for i, o in enumerate(item["offset_mapping"]) if o}
        last = {o[1]: i for i, o in enumerate(item["offset_mapping"]) if o}
        if start_char in positions and end_char in last:
            s_logits[positions[start_char]], e_logits[last[end_char]] = 5.0, 5.0
            planted.add(example.id)
        starts.append(s_logits)
        ends.append(e_logits)
    predictions = best_spans(examples, items, starts, ends, n_best_size=20, max_answer_length=30)
    assert len(planted) >= len(examples) - 2
    assert all(predictions[e.id] == e.answers[0] for e in examples if e.id in planted)

    # A higher-scoring span longer than max_answer_length tokens loses to the valid one.
    item = next(i for i, it in enumerate(items) if examples[it["example_index"]].id in planted)
    context_tokens = [i for i, o in enumerate(items[item]["offset_mapping"]) if o]
    starts[item] = starts[item].copy()
    ends[item] = ends[item].copy()
    starts[item][context_tokens[0]], ends[item][context_tokens[-1]] = 9.0, 9.0
    assert context_tokens[-1] - context_tokens[0] + 1 > 30
    again = best_spans(examples, items, starts, ends, n_best_size=20, max_answer_length=30)
    example = examples[items[item]["example_index"]]
    assert again[example.id] != example.context[items[item]["offset_mapping"][context_tokens[0]][0]:]
    assert len(tokenizer.tokenize(again[example.id])) <= 30


def _squad_file(tmp_path, qa: dict, context: str = "Paris is the capital of France.") -> str:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"data": [{"paragraphs": [{"context": context, "qas": [qa]}]}]}))
    return path


@pytest.mark.parametrize("qa, message", [
    ({"id": "q1", "question": "Capital?", "answers": [{"text": "Paris", "answer_start": 3}]},
     r"data\[0\].paragraphs\[0\].qas\[0\] \(id q1\): column 'answers': answer_start 3 does not point at 'Paris'"),
    ({"id": "q1", "answers": [{"text": "Paris", "answer_start": 0}]}, r"qas\[0\]: column 'question' is missing"),
    ({"id": "q1", "question": "Capital?", "answers": [{"text": "Paris"}]}, "column 'answer_start' is missing"),
    ({"id": "q1", "question": "Capital?", "answers": [], "is_impossible": True}, "no answerable questions"),
])
def test_bad_squad_files_name_the_question_and_the_column(tmp_path, qa, message):
    path = _squad_file(tmp_path, qa)
    with pytest.raises(DataError, match=message) as error:
        read_squad_json(path)
    assert str(path) in str(error.value)


def test_a_file_that_is_not_squad_json_says_what_it_expected(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text('[{"text": "hi"}]')
    with pytest.raises(DataError, match="not a SQuAD JSON file"):
        read_squad_json(path)
