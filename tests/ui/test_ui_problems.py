"""A refused launch's problems, put next to the fields that caused them.

The messages come from the client's own validation (``check_overrides``, the queue limits), so
these tests break if the two drift apart.
"""

from __future__ import annotations

import pytest
from launchbay.queue_config.inputs_check import check_overrides
from launchbay.queue_config.launch_policy import check_against_queue
from launchbay.queue_config.models import JobSpec, QueueConfig, Resources
from launchbay.ui.form import build_form, iter_fields
from launchbay.ui.problems import attribute, split_problems
from ui_helpers import GPU_QUEUE, JOB_SPEC, docs_inputs

from launchbay.errors import ValidationError

FIELDS = list(iter_fields(build_form(docs_inputs())))


def refusal(run_config=None, files=None) -> str:
    with pytest.raises(ValidationError) as refused:
        check_overrides("trainer", docs_inputs(), run_config or {}, files or {})
    return str(refused.value)


def test_a_value_over_the_schemas_maximum_goes_next_to_its_field_without_repeating_the_key():
    by_field, general = attribute(refusal({"trainer": {"batch_size": 300}}), FIELDS)
    assert by_field == {"run_config:trainer.batch_size": ["300 is greater than the maximum of 256"]}
    assert general == []


def test_several_problems_each_find_their_field():
    message = refusal(
        {"seed": "x", "trainer": {"learning_rate": 0, "dataset": "mnist"}}, {"config.yaml": {"epochs": 2.5}}
    )
    by_field, general = attribute(message, FIELDS)
    assert by_field == {
        "run_config:seed": ['expected int, got str "x"'],
        "run_config:trainer.learning_rate": ["0 is less than or equal to the minimum of 0"],
        "run_config:trainer.dataset": ["'mnist' is not one of ['cifar10', 'cifar100']"],
        "file:config.yaml:epochs": ["expected int, got float 2.5"],
    }
    assert general == []


def test_a_problem_about_a_key_the_form_does_not_show_goes_on_top():
    by_field, general = attribute(refusal({"trainer": {"private": {"token": "x"}}}), FIELDS)
    assert by_field == {}
    assert general == ["key 'trainer.private.token' is excluded by prefix 'trainer.private'"]


def test_a_value_holding_a_semicolon_stays_one_problem():
    message = refusal({"trainer": {"dataset": "a; b: c", "batch_size": 0}})
    assert len(split_problems(message, FIELDS)) == 2
    by_field, _ = attribute(message, FIELDS)
    assert by_field["run_config:trainer.dataset"] == ["'a; b: c' is not one of ['cifar10', 'cifar100']"]
    assert by_field["run_config:trainer.batch_size"] == ["0 is less than the minimum of 1"]


def test_queue_limit_problems_go_next_to_the_resource_fields():
    queue = QueueConfig.model_validate(GPU_QUEUE)
    request = Resources(cpus=64, gpus=16, gpu_model="V100")
    with pytest.raises(ValidationError) as refused:
        check_against_queue(request, 90000, JobSpec.model_validate(JOB_SPEC), queue)
    by_field, general = attribute(str(refused.value), FIELDS)
    assert by_field == {
        "cpus": ["requested 64, queue 'gpu' allows at most 32"],
        "gpus": ["requested 16, queue 'gpu' allows at most 8"],
        "max_runtime": ["requested 25h, queue 'gpu' allows at most 24h"],
        "gpu_model": ["requested 'V100', queue 'gpu' allows only 'A100|H100'"],
    }
    assert general == []


def test_an_unknown_queue_goes_next_to_the_queue_select_in_one_piece():
    by_field, general = attribute("unknown queue 'gpx'; known queues: cpu, gpu", FIELDS)
    assert by_field == {"queue": ["unknown queue 'gpx'; known queues: cpu, gpu"]}
    assert general == []
