"""The task registry is the one place that names tasks: the recipe schema, the data, the loaders and
the bundle read their vocabulary from it."""

import json
import subprocess
import sys
from typing import get_args

import pytest

from pofa_openvino.data import ClassificationData, QAData
from pofa_openvino.errors import PofaError
from pofa_openvino.recipe import Recipe
from pofa_openvino.runtime.tasks import (
    CLASSIFICATION,
    QUESTION_ANSWERING,
    TASKS,
    TaskName,
    get_task,
    task_of,
    task_of_architectures,
)


def test_the_recipe_schema_accepts_exactly_the_registered_tasks():
    assert set(get_args(TaskName)) == set(TASKS)
    assert get_args(Recipe.model_fields["task"].annotation) == get_args(TaskName)


@pytest.mark.parametrize("name", ["fill-mask", "", None])
def test_an_unknown_task_is_one_line_listing_the_valid_ones(name):
    with pytest.raises(PofaError, match=f"^unknown task {name!r}; valid tasks: text-classification, "
                                        "question-answering$"):
        get_task(name)


@pytest.mark.parametrize(("architectures", "expected"), [
    (["BertForSequenceClassification"], CLASSIFICATION),
    (["DistilBertForQuestionAnswering"], QUESTION_ANSWERING),
    (["BertModel"], None),
    ([], None),
])
def test_the_task_of_a_config_comes_from_its_head(architectures, expected, tmp_path):
    assert task_of_architectures(architectures) is expected
    (tmp_path / "config.json").write_text(json.dumps({"architectures": architectures}))
    assert task_of(tmp_path) == (expected or CLASSIFICATION).name  # a bare encoder is fine-tuned to classify


def test_a_directory_without_a_config_is_classification(tmp_path):
    assert task_of(tmp_path) == CLASSIFICATION.name


def test_the_data_reads_heads_targets_and_metric_from_the_registry():
    classification = ClassificationData([], {}, ["a", "b"], ("text",))
    qa = QAData([], {})
    assert (classification.heads, classification.targets, classification.metric) == \
        (CLASSIFICATION.heads, CLASSIFICATION.targets, CLASSIFICATION.metric)
    assert (qa.heads, qa.targets, qa.metric) == (QUESTION_ANSWERING.heads, QUESTION_ANSWERING.targets, "f1")


@pytest.mark.parametrize(("task", "columns", "expected"), [
    (CLASSIFICATION, 1, 1), (CLASSIFICATION, 2, 2), (QUESTION_ANSWERING, 1, 2)])
def test_text_inputs(task, columns, expected):
    assert task.text_inputs(columns) == expected


def test_the_registry_imports_nothing_heavy():
    """The runtime reads the registry, so importing it (and naming its classes) loads no toolkit library."""
    probe = ("import sys\nfrom pofa_openvino.runtime.tasks import TASKS\n"
             "[(t.auto_class, t.openvino_class) for t in TASKS.values()]\n"
             "heavy = {'transformers', 'torch', 'optimum'} & set(sys.modules)\n"
             "assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
