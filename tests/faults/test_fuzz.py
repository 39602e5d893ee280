"""Property-based fuzzing of job payloads and extraction schemas.

Whatever arrives — arbitrary JSON, or a valid payload with one part mutated — validation ends
in a valid job or in one of qfleet's own input errors with a message; never another exception.
The second half puts fuzzed payloads straight on the queues of a real worker process: each gets
a `JobError` (or a result), and the worker keeps serving.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ops.localfleet import WorkerProcess
from qfleet.producer.client import FleetClient
from qfleet.tasks.constants import QUEUE_EXTRACT, QUEUE_GENERATE, TASK_EXTRACT, TASK_GENERATE
from qfleet.tasks.errors import PermanentError
from qfleet.tasks.extract_schema import check_extract_schema
from qfleet.tasks.limits import parse_extract_job, parse_generate_job
from qfleet.tasks.schemas import GenerateJob, JobError, validate_generate_job, validate_job
from qfleet.tasks.settings import Settings

# Keys the validators look at, so that fuzzed objects reach deep code paths, not only the
# "unknown field" refusal.
JOB_KEYS = [
    "kind", "job_id", "prompt", "system", "messages", "role", "content", "max_tokens",
    "temperature", "top_p", "top_k", "stop", "stream", "priority", "retrieval", "documents",
    "id", "text", "json_schema", "instructions", "examples", "output",
]  # fmt: skip
SCHEMA_KEYS = [
    "type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf",
    "format", "$ref", "$defs", "definitions", "minimum", "maximum", "maxLength", "minLength",
    "maxItems", "minItems", "title", "description", "pattern", "oneOf",
]  # fmt: skip
SCHEMA_WORDS = ["object", "string", "integer", "array", "null", "date", "#/$defs/a", "a"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(SCHEMA_WORDS)
)


def _json(keys: list[str]) -> st.SearchStrategy[Any]:
    """JSON values whose object keys are mostly the ones the validators know."""
    names = st.sampled_from(keys) | st.text(max_size=6)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(names, inner, max_size=6),
        max_leaves=40,
    )


job_json = _json(JOB_KEYS)
schema_json = _json(SCHEMA_KEYS)

VALID_SCHEMA: dict[str, Any] = {
    "$defs": {"a": {"type": "string", "maxLength": 8}},
    "type": "object",
    "properties": {
        "name": {"$ref": "#/$defs/a"},
        "age": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
        "kind": {"enum": ["a", "b"]},
        "when": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]},
    },
    "required": ["name", "age"],
}
VALID_GENERATE: dict[str, Any] = {
    "prompt": "Say hi",
    "system": "Be brief.",
    "max_tokens": 8,
    "temperature": 0.5,
    "top_p": 0.9,
    "top_k": 4,
    "stop": ["."],
}
VALID_CHAT: dict[str, Any] = {
    "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
    "max_tokens": 8,
}
VALID_EXTRACT: dict[str, Any] = {
    "kind": "extract",
    "documents": [{"id": "d1", "text": "Ann, 31"}, {"id": "d2", "text": "Bob"}],
    "json_schema": VALID_SCHEMA,
    "examples": [{"text": "Cy, 4", "output": {"name": "Cy", "age": 4}}],
    "max_tokens": 16,
}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a node inside `value` (dict keys and list positions)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any, *, delete: bool) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    if delete and not rest:
        del copy[head]
    else:
        copy[head] = _replace(copy[head], rest, new, delete=delete)
    return copy


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any], replacement: st.SearchStrategy[Any]) -> Any:
    """`base` with one node replaced by arbitrary JSON, one key deleted, or one key added."""
    paths = _paths(base)
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "replace":
        return _replace(base, draw(st.sampled_from(paths)), draw(replacement), delete=False)
    if action == "delete":
        return _replace(base, draw(st.sampled_from(paths[1:])), None, delete=True)
    objects = [p for p in paths if isinstance(_at(base, p), dict)]
    path = draw(st.sampled_from(objects))
    key = draw(st.sampled_from(JOB_KEYS + SCHEMA_KEYS))
    return _replace(base, path, {**_at(base, path), key: draw(replacement)}, delete=False)


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


any_payload = (
    job_json
    | mutated(VALID_GENERATE, job_json)
    | mutated(VALID_CHAT, job_json)
    | mutated(VALID_EXTRACT, job_json | schema_json)
)
any_schema = schema_json | mutated(VALID_SCHEMA, schema_json)

LIMITS = Settings(max_prompt_chars=64, max_new_tokens=16, max_schema_chars=600, max_schema_depth=3)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_own_errors(check: Callable[[Any], object], payload: Any) -> None:
    try:
        check(payload)
    except PermanentError as exc:  # InvalidJobError and its kin: the refusal qfleet promises
        refusal: PermanentError = exc
    else:
        return
    assert str(refusal).strip(), f"{type(refusal).__name__} without a message"


@FUZZ
@given(any_payload)
def test_validate_job_raises_only_its_own_errors(payload: Any) -> None:
    _only_own_errors(validate_job, payload)


@FUZZ
@given(any_payload)
def test_validate_generate_job_raises_only_its_own_errors(payload: Any) -> None:
    _only_own_errors(validate_generate_job, payload)


@FUZZ
@given(any_payload)
def test_the_limits_raise_only_their_own_errors(payload: Any) -> None:
    _only_own_errors(lambda p: parse_generate_job(p, LIMITS), payload)
    _only_own_errors(lambda p: parse_extract_job(p, LIMITS), payload)


@FUZZ
@given(any_schema)
def test_the_schema_checker_raises_only_its_own_errors(schema: Any) -> None:
    _only_own_errors(check_extract_schema, schema)
    _only_own_errors(lambda s: check_extract_schema(s, max_chars=300, max_depth=2), schema)


def test_a_hostile_deeply_nested_schema_is_refused_not_a_recursion_error() -> None:
    # Deep enough to overflow the interpreter's stack in any recursive walk or json.dumps.
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(5_000):
        schema = {"type": "object", "properties": {"x": schema}}
    with pytest.raises(PermanentError, match="nested"):
        check_extract_schema(schema)
    with pytest.raises(PermanentError, match="nested"):
        validate_job({**VALID_EXTRACT, "json_schema": schema})
    # And a hostile example output (shown to the model as JSON) is refused by the limits
    output: dict[str, Any] = {}
    for _ in range(5_000):
        output = {"x": output}
    hostile = {**VALID_EXTRACT, "examples": [{"text": "t", "output": output}]}
    with pytest.raises(PermanentError, match="nested"):
        parse_extract_job(hostile, LIMITS)


# --- fuzzed payloads through a real worker ------------------------------------------------------

WIRE_PAYLOADS = 30
# Input refusals a payload may earn; anything else (internal, retryable) is a defect.
INPUT_ERRORS = {"invalid_job", "unsupported_schema", "prompt_too_long"}


@pytest.fixture(scope="module")
def fuzz_worker(
    fleet_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """A worker on both queues; one attempt per job, so a defect shows as `internal` at once."""
    env = {**fleet_env, "QFLEET_MAX_ATTEMPTS": "1", "QFLEET_MAX_NEW_TOKENS": "16"}
    process = WorkerProcess(
        env,
        tmp_path_factory.mktemp("worker") / "worker.log",
        hostname=f"fuzz-{uuid.uuid4().hex[:6]}@test",
        queues=f"{QUEUE_GENERATE},{QUEUE_EXTRACT}",
    ).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def fuzz_fleet(fleet_env: dict[str, str]) -> Iterator[FleetClient]:
    client = FleetClient(
        Settings(
            broker_url=fleet_env["QFLEET_BROKER_URL"],
            redis_key_prefix=fleet_env["QFLEET_REDIS_KEY_PREFIX"],
        )
    )
    yield client
    client.close()


def _outcome(fleet: FleetClient, job_id: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while (outcome := fleet.result(job_id)) is None:
        assert time.monotonic() < deadline, f"no outcome for {job_id} after {timeout}s"
        time.sleep(0.02)
    return outcome


@pytest.mark.integration
@settings(
    max_examples=WIRE_PAYLOADS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(payload=any_payload, wrong_queue=st.sampled_from([False, False, False, True]))
def test_fuzzed_payloads_on_the_queue_get_job_errors_and_the_worker_survives(
    fuzz_worker: WorkerProcess, fuzz_fleet: FleetClient, payload: Any, wrong_queue: bool
) -> None:
    # Given a fuzzed payload put straight on a queue (mostly its kind's, sometimes the other),
    # past every producer-side check
    extract = (isinstance(payload, dict) and payload.get("kind") == "extract") != wrong_queue
    job_id = f"fuzz-{uuid.uuid4().hex}"
    fuzz_fleet.app.send_task(
        TASK_EXTRACT if extract else TASK_GENERATE,
        kwargs={"job": payload},
        task_id=job_id,
        queue=QUEUE_EXTRACT if extract else QUEUE_GENERATE,
    )
    # When the worker takes it
    outcome = _outcome(fuzz_fleet, job_id)
    # Then it is a result, or a JobError that refuses the input with a message
    event(f"{'extract' if extract else 'generate'}: {getattr(outcome, 'code', outcome.status)}")
    if isinstance(outcome, JobError):
        assert outcome.code in INPUT_ERRORS, outcome
        assert outcome.message.strip()
        assert not outcome.retryable
    assert fuzz_worker.alive()


@pytest.mark.integration
def test_the_fuzzed_worker_still_serves_a_normal_job(
    fuzz_worker: WorkerProcess, fuzz_fleet: FleetClient
) -> None:
    # Given the worker that just took the fuzzed payloads (this test runs after them)
    # When a normal job is submitted
    job_id = fuzz_fleet.submit(GenerateJob(prompt="Say hi", max_tokens=4))
    # Then it succeeds, and the worker never logged an unexpected failure
    assert fuzz_fleet.wait(job_id, timeout=60).usage.completion_tokens >= 1
    assert "failed with an unexpected error" not in fuzz_worker.log()
    assert fuzz_worker.alive()
