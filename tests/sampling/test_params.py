import pytest
from pydantic import ValidationError

from tasks.core.sampling import SampleRequest, SamplingParams


def test_zero_samples_is_a_clear_error():
    with pytest.raises(ValidationError, match="zero samples requested"):
        SamplingParams(n=0)


def test_unknown_field_rejected():
    with pytest.raises(ValidationError):
        SamplingParams(n=1, temprature=0.5)


def test_params_frozen():
    params = SamplingParams(n=2)
    with pytest.raises(ValidationError):
        params.n = 3


def test_empty_stop_sequence_rejected():
    with pytest.raises(ValidationError, match="non-empty"):
        SamplingParams(n=1, stop=("",))


def test_request_needs_problem_id():
    with pytest.raises(ValidationError):
        SampleRequest(problem_id="", prompt="x")
