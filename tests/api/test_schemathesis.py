"""Schemathesis against a live server: every operation of the OpenAPI schema, as an agent (its
key) and as a person (a personal token), with valid and invalid inputs. The suite fails on any
5xx, any response that does not match the schema and any status code the schema does not
document. Path parameters are drawn from the live world's real objects as well as at random, so
the operations also run on tasks, bids and deliveries that exist.

Bounded: ``MAX_EXAMPLES`` cases per operation and caller (see BENCHMARKS.md for the count and
time)."""

from __future__ import annotations

import collections
import json
import re
import time
from typing import Any

import hypothesis.strategies as st
import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.specs.openapi import checks as openapi_checks

from tests.api.world import build_world

MAX_EXAMPLES = 6
CHECKS = [
    checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.negative_data_rejection,
]

RAW_SCHEMA = json.loads(
    json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str)
)


def _loaded(phases: list[str]) -> Any:
    loaded = schemathesis.openapi.from_dict(RAW_SCHEMA)
    loaded.config.phases.update(phases=phases)
    loaded.config.generation.update(
        max_examples=MAX_EXAMPLES,
        deterministic=True,
        allow_x00=True,
        unique_inputs=True,
        # Unknown query parameters are ignored, as most APIs do: not a negative case.
        allow_extra_parameters=False,
    )
    for hook in (flatmap_path_parameters, after_call):
        loaded.hook(hook)
    return loaded


# The live world's objects, by path parameter name (filled in by the fixture).
REAL: dict[str, list[Any]] = {}
# Cases sent, by phase (what the run reports at its end).
SENT: collections.Counter[str] = collections.Counter()


def after_call(context: Any, case: Any, response: Any) -> None:
    phase = getattr(getattr(case.meta, "phase", None), "name", "unknown") if case.meta else "?"
    SENT[str(getattr(phase, "value", phase))] += 1


def _valid(value: Any) -> bool:
    """A value a positive case could have drawn: a negative case's broken one stays broken."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 0 <= value < 10**18
    return isinstance(value, str) and re.fullmatch(r"[-a-zA-Z0-9_]+", value) is not None


def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    known = {
        name: REAL[name]
        for name, value in (path_parameters or {}).items()
        if REAL.get(name) and _valid(value)
    }
    if not known:
        return st.just(path_parameters)
    real = st.fixed_dictionaries({name: st.sampled_from(values) for name, values in known.items()})
    return st.one_of(st.just(path_parameters), real.map(lambda ids: {**path_parameters, **ids}))


# The coverage phase (every boundary and wrong type of every parameter, unbounded by
# MAX_EXAMPLES: nine in ten cases) runs once, as the agent: validation does not depend on who
# asks. Fuzzing runs for both callers.
as_agent = _loaded(["examples", "coverage", "fuzzing"])
as_person = _loaded(["examples", "fuzzing"])


@pytest.fixture(scope="module")
def world(live_market: Any, django_db_blocker: Any) -> Any:
    with django_db_blocker.unblock():
        built = build_world()
    REAL.update(
        task_id=[built[name].pk for name in ("open_task", "working", "delivered", "disputed")],
        bid_id=[built["bid"].pk],
        delivery_id=[built["delivery"].pk],
        slug=[built["worker"].slug],
        execution_id=[],
    )
    built["url"] = live_market.url
    started = time.monotonic()
    yield built
    took = time.monotonic() - started
    print(f"\nschemathesis: {sum(SENT.values())} cases in {took:.0f} s, by phase {dict(SENT)}")


SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@as_agent.parametrize()
@SETTINGS
def test_as_an_agent(case: Any, world: dict[str, Any]) -> None:
    case.call_and_validate(
        base_url=f"{world['url']}",
        headers={"Authorization": f"Api-Key {world['secrets']['assignee']}"},
        checks=CHECKS,
        timeout=30,
    )


@as_person.parametrize()
@SETTINGS
def test_as_a_person(case: Any, world: dict[str, Any]) -> None:
    case.call_and_validate(
        base_url=f"{world['url']}",
        headers={"Authorization": f"Api-Key {world['secrets']['poster']}"},
        checks=CHECKS,
        timeout=30,
    )


# Marked for the database (it needs none) so pytest-django sets the test database up when this
# module runs alone: it prepares only the databases that marked tests ask for.
@pytest.mark.django_db
def test_the_schema_passes_openapi_spec_validator() -> None:
    from openapi_spec_validator import validate

    validate(RAW_SCHEMA)
