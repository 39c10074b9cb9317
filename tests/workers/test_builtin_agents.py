"""Each built-in agent does real work, and refuses bad input with a reason."""

from __future__ import annotations

import json

import pytest

from workers.exceptions import BudgetExceeded, RuntimeFailure
from workers.runtimes import builtin
from workers.runtimes.base import RunContext, TaskBrief

ARTICLE = (
    "Solar panels convert sunlight into electricity. Solar panels are made of silicon cells. "
    "The cells produce direct current when light hits them. An inverter turns direct current "
    "into alternating current for the home. Cats like to sleep in the sun. Solar panels need "
    "little maintenance and last for decades. Electricity from solar panels lowers energy bills."
)


def brief(description: str, **kwargs: object) -> TaskBrief:
    return TaskBrief(task_id=7, title=kwargs.pop("title", "t"), description=description, **kwargs)


def test_text_stats_counts_and_extracts_keywords() -> None:
    result = builtin.text_stats(brief(ARTICLE))
    assert result.data["words"] == 56
    assert result.data["unique_words"] == 41
    assert result.data["sentences"] == 7
    assert result.data["paragraphs"] == 1
    assert result.data["keywords"][:4] == [
        {"keyword": "solar panels", "score": 6.0},
        {"keyword": "direct current", "score": 3.0},
        {"keyword": "cells", "score": 2.0},
        {"keyword": "electricity", "score": 2.0},
    ]
    assert result.text.startswith("56 words in 7 sentences and 1 paragraphs")


def test_text_stats_uses_the_fenced_block_when_there_is_one() -> None:
    result = builtin.text_stats(
        brief("Please analyse:\n```\nOne two three. Four five.\n```\nThanks")
    )
    assert (result.data["words"], result.data["sentences"]) == (5, 2)


def test_text_stats_refuses_an_empty_text() -> None:
    with pytest.raises(RuntimeFailure, match="no text to analyse"):
        builtin.text_stats(brief("   "))


def test_csv_becomes_typed_json_records_and_is_validated() -> None:
    schema = {
        "type": "array",
        "items": {"type": "object", "properties": {"age": {"type": "integer", "minimum": 18}}},
    }
    csv_text = "name,age,member\nAda,36,true\nBob,17,false\n"
    result = builtin.json_csv_transform(brief(csv_text, checks={"json_schema": schema}))
    assert result.data["records"] == [
        {"name": "Ada", "age": 36, "member": True},
        {"name": "Bob", "age": 17, "member": False},
    ]
    assert result.data["schema_valid"] is False
    assert result.data["schema_errors"] == [
        {"path": "1/age", "message": "17 is less than the minimum of 18"}
    ]


def test_json_records_become_csv() -> None:
    records = [{"id": 1, "tags": ["a", "b"]}, {"id": 2, "name": "x"}]
    result = builtin.json_csv_transform(brief(f"```json\n{json.dumps(records)}\n```"))
    assert result.data["csv"] == 'id,tags,name\n1,"[""a"", ""b""]",\n2,,x\n'
    assert result.data["columns"] == ["id", "tags", "name"]


@pytest.mark.parametrize(
    ("material", "message"),
    [
        ('{"a": 1,}', "The JSON is invalid at line 1, column 9"),
        ("[1, 2]", "a JSON object or a list of objects"),
        ("a,b\n1,2,3\n", "CSV line 2 does not have as many fields"),
    ],
)
def test_json_csv_refuses_broken_input(material: str, message: str) -> None:
    with pytest.raises(RuntimeFailure, match=message):
        builtin.json_csv_transform(brief(material))


def test_summary_keeps_the_central_sentences_in_order_and_drops_the_off_topic_one() -> None:
    result = builtin.summarize(brief(ARTICLE, acceptance_criteria="In 2 sentences."))
    assert result.data["sentences_out"] == 2
    assert "Cats" not in result.text
    first, second = result.data["chosen_indexes"]
    assert first < second
    assert result.text.count("Solar panels") + result.text.count("solar panels") >= 2


def test_summary_refuses_a_single_sentence() -> None:
    with pytest.raises(RuntimeFailure, match="at least two sentences"):
        builtin.summarize(brief("Only one sentence here."))


def test_verifier_reports_each_check_with_evidence() -> None:
    checks = {
        "json_schema": {"type": "object", "required": ["total"]},
        "required_fields": ["total", "currency"],
        "regex": r'"currency":\s*"[A-Z]{3}"',
        "max_words": 10,
    }
    good = brief('{"total": 12, "currency": "EUR"}', checks=checks)
    result = builtin.verify_against_criteria(good)
    assert result.data["passed"] is True
    assert [r["check"] for r in result.data["results"]] == [
        "json_schema",
        "regex",
        "required_fields",
        "max_words",
    ]
    bad = builtin.verify_against_criteria(brief('{"total": 12}', checks=checks))
    assert bad.data["passed"] is False
    assert bad.data["results"][2] == {
        "check": "required_fields",
        "passed": False,
        "evidence": "Missing: currency",
    }
    assert bad.text == "Verification failed: 2 of 4 machine checks passed."


def test_verifier_free_text_criteria_are_a_coverage_hint_only() -> None:
    result = builtin.verify_against_criteria(
        brief("The report covers revenue.", acceptance_criteria="Mention revenue and margins")
    )
    assert result.data["results"] == [
        {
            "check": "criteria_coverage",
            "passed": None,
            "evidence": "1 of 3 criteria terms appear (33%); missing: margins, mention",
        }
    ]
    assert result.text.startswith("No machine checks were defined")


def test_run_records_events_and_meters_the_fixed_price() -> None:
    events: list[dict] = []
    context = RunContext(
        execution_id=1,
        attempt=1,
        task=brief(ARTICLE, budget=5),
        agent_config={"builtin": "text-stats", "price_per_run": 4},
        record=lambda **event: events.append(event),
    )
    result = builtin.run(context)
    assert result.data["words"] == 56
    assert context.spent == 4
    assert [event["kind"] for event in events] == ["tool_call", "message"]

    over = RunContext(
        execution_id=1,
        attempt=1,
        task=brief(ARTICLE, budget=3),
        agent_config={"builtin": "text-stats", "price_per_run": 4},
        record=lambda **event: None,
    )
    with pytest.raises(BudgetExceeded, match="would cost 4 credits, over the task's budget of 3"):
        builtin.run(over)


def test_unknown_builtin_is_refused() -> None:
    context = RunContext(
        execution_id=1,
        attempt=1,
        task=brief("x"),
        agent_config={"builtin": "nope"},
        record=lambda **event: None,
    )
    with pytest.raises(RuntimeFailure, match="Unknown built-in agent 'nope'"):
        builtin.run(context)


# (checks, material): the market's verdict on a delivery whose text is the material and whose
# data is the material parsed, and the verifier agent's on the material, are one.
CHECK_CASES = [
    ({"regex": r"total: \d+"}, "the total: 12"),
    ({"regex": "^total"}, "first line\ntotal: 12"),  # no multiline unless the pattern asks
    ({"regex": "(?m)^total"}, "first line\ntotal: 12"),
    ({"regex": r"(a)\1"}, "aa"),  # a backreference: RE2 cannot run it, the check fails
    ({"required_fields": ["a.b"]}, '{"a": {"b": 1}}'),  # dots for nesting
    ({"required_fields": ["a.b"]}, '{"a.b": 1}'),
    ({"required_fields": ["total"]}, "not json"),
    ({"json_schema": {"type": "object", "required": ["total"]}}, '{"total": 1}'),
    ({"json_schema": {"type": "object", "required": ["total"]}}, "[1, 2]"),
    ({"json_schema": {"type": "string", "pattern": "^[A-Z]{3}$"}}, '"EUR"'),
    ({"json_schema": {"type": "string", "pattern": "^[A-Z]{3}$"}}, '"euro"'),
    ({"json_schema": {"type": "object"}}, "null"),
    (
        {"json_schema": {"type": "object"}, "regex": "EUR", "required_fields": ["currency"]},
        '{"currency": "EUR"}',
    ),
]


@pytest.mark.parametrize(("checks", "material"), CHECK_CASES)
def test_the_verifier_agent_and_the_market_give_one_verdict(checks: dict, material: str) -> None:
    from marketplace.services import checks_run

    try:
        data = json.loads(material)
    except json.JSONDecodeError:
        data = None
    market = checks_run(checks=checks, text=material, data=data)
    verifier = builtin.verify_against_criteria(brief(material, checks=checks)).data
    assert [result for result in verifier["results"] if result["passed"] is not None] == market
    assert verifier["passed"] == all(result["passed"] for result in market)
