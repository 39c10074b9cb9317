"""Built-in agents: useful work with no network, so the demo and the tests do real things.

Each agent is a pure function of the task brief (``TaskBrief``) returning a ``RunResult``; the
material it works on is the first fenced block of the task's description, or the whole description.
The capability descriptions below are honest: they say what the agent does and what it does not.
An agent's ``runtime_config`` names its function: ``{"builtin": "text-stats"}``.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from marketplace.services import linear_regex
from marketplace.services.deliveries.checks import checks_run
from workers.exceptions import RuntimeFailure
from workers.runtimes.base import RunContext, RunResult, TaskBrief

STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it its
    itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them themselves
    then there these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves may might must shall
    one two us via per etc""".split()  # noqa: SIM905 - a word list reads better as prose
)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*[A-Za-z]|[A-Za-z]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def words_of(text: str) -> list[str]:
    return [word.lower() for word in _WORD.findall(text)]


def sentences_of(text: str) -> list[str]:
    flat = re.sub(r"\s+", " ", text).strip()
    return [sentence.strip() for sentence in _SENTENCE_END.split(flat) if sentence.strip()]


def keywords_of(text: str, *, limit: int = 10) -> list[dict[str, Any]]:
    """Content words and two-word phrases ranked by frequency (stop words removed)."""
    tokens = words_of(text)
    singles = Counter(word for word in tokens if word not in STOPWORDS and len(word) > 2)
    pairs = Counter(
        f"{first} {second}"
        for first, second in itertools.pairwise(tokens)
        if first not in STOPWORDS and second not in STOPWORDS and len(first) > 2 and len(second) > 2
    )
    scored: dict[str, float] = {}
    for phrase, count in pairs.items():
        if count >= 2:  # a phrase seen once is noise, not a keyword
            scored[phrase] = count * 1.5
            # Its words count for the phrase, not again on their own.
            for word in phrase.split():
                singles[word] -= count
    scored.update({word: float(count) for word, count in singles.items() if count > 0})
    ranked = sorted(scored.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return [{"keyword": keyword, "score": round(score, 2)} for keyword, score in ranked]


def text_stats(task: TaskBrief) -> RunResult:
    text = task.material
    if not text:
        raise RuntimeFailure("There is no text to analyse: put it in the task description.")
    tokens = words_of(text)
    sentences = sentences_of(text)
    paragraphs = [part for part in re.split(r"\n\s*\n", text) if part.strip()]
    keywords = keywords_of(text)
    syllables = sum(max(1, len(re.findall(r"[aeiouy]+", word))) for word in tokens)
    words, sentence_count = max(1, len(tokens)), max(1, len(sentences))
    flesch = 206.835 - 1.015 * (words / sentence_count) - 84.6 * (syllables / words)
    stats = {
        "characters": len(text),
        "words": len(tokens),
        "unique_words": len(set(tokens)),
        "sentences": len(sentences),
        "paragraphs": len(paragraphs),
        "average_words_per_sentence": round(len(tokens) / sentence_count, 2),
        "reading_time_seconds": math.ceil(len(tokens) / 238 * 60),
        "flesch_reading_ease": round(flesch, 1),
        "keywords": keywords,
    }
    top = ", ".join(item["keyword"] for item in keywords[:5]) or "none"
    summary = (
        f"{stats['words']} words in {stats['sentences']} sentences and {stats['paragraphs']} "
        f"paragraphs; reading time about {stats['reading_time_seconds']} s; Flesch reading ease "
        f"{stats['flesch_reading_ease']}. Top keywords: {top}."
    )
    return RunResult(text=summary, data=stats)


def _parse_csv(text: str) -> list[dict[str, str]]:
    try:
        dialect = csv.Sniffer().sniff(text.splitlines()[0] if text else "", delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    rows = []
    for number, row in enumerate(reader, start=2):
        if None in row or None in row.values():
            raise RuntimeFailure(f"CSV line {number} does not have as many fields as the header.")
        rows.append({key.strip(): value.strip() for key, value in row.items()})
    if reader.fieldnames is None:
        raise RuntimeFailure("The CSV has no header line.")
    return rows


def _typed(value: str) -> Any:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return {"true": True, "false": False, "": None}.get(value.lower(), value)


def json_csv_transform(task: TaskBrief) -> RunResult:
    """JSON <-> CSV, with validation against the task's JSON schema when it has one."""
    material = task.material
    if not material:
        raise RuntimeFailure("There is no JSON or CSV to transform: put it in the description.")
    schema = task.checks.get("json_schema") if isinstance(task.checks, dict) else None
    if material[0] in "[{":
        try:
            document = json.loads(material)
        except json.JSONDecodeError as error:
            raise RuntimeFailure(
                f"The JSON is invalid at line {error.lineno}, column {error.colno}: {error.msg}."
            ) from error
        records = document if isinstance(document, list) else [document]
        if not all(isinstance(record, dict) for record in records):
            raise RuntimeFailure("CSV needs a JSON object or a list of objects.")
        columns = list(dict.fromkeys(key for record in records for key in record))
        output = io.StringIO()
        writer = csv.DictWriter(output, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for record in records:
            writer.writerow(
                {
                    key: json.dumps(value) if isinstance(value, dict | list) else value
                    for key, value in record.items()
                }
            )
        result: dict[str, Any] = {"format": "csv", "columns": columns, "rows": len(records)}
        result["csv"] = output.getvalue()
        validated: Any = document
        text = f"Converted {len(records)} JSON records into CSV with columns {', '.join(columns)}."
    else:
        records = [
            {key: _typed(value) for key, value in row.items()} for row in _parse_csv(material)
        ]
        columns = list(records[0]) if records else []
        result = {"format": "json", "columns": columns, "rows": len(records), "records": records}
        validated = records
        text = f"Converted {len(records)} CSV rows into JSON records with columns " + ", ".join(
            columns
        )
        text += "."
    if schema:
        validator = linear_regex.schema_validator(schema)
        errors = [
            {"path": "/".join(map(str, error.absolute_path)), "message": error.message}
            for error in sorted(validator.iter_errors(validated), key=lambda e: list(e.path))
        ]
        result["schema_valid"] = not errors
        result["schema_errors"] = errors[:50]
        text += " Valid against the schema." if not errors else f" {len(errors)} schema errors."
    return RunResult(text=text, data=result)


def _sentence_scores(sentences: list[str]) -> list[float]:
    """TextRank: PageRank over sentences linked by the cosine similarity of their word counts."""
    vectors = [Counter(w for w in words_of(s) if w not in STOPWORDS) for s in sentences]
    norms = [math.sqrt(sum(count * count for count in vector.values())) for vector in vectors]
    size = len(sentences)
    weights = [[0.0] * size for _ in range(size)]
    for i in range(size):
        for j in range(i + 1, size):
            if norms[i] and norms[j]:
                dot = sum(count * vectors[j][word] for word, count in vectors[i].items())
                weights[i][j] = weights[j][i] = dot / (norms[i] * norms[j])
    totals = [sum(row) for row in weights]
    scores = [1.0 / size] * size
    for _ in range(50):
        scores = [
            0.15 / size
            + 0.85 * sum(weights[j][i] / totals[j] * scores[j] for j in range(size) if totals[j])
            for i in range(size)
        ]
    return scores


def summarize(task: TaskBrief) -> RunResult:
    """Extractive summary: the highest-ranked sentences, in their original order."""
    sentences = sentences_of(task.material)
    if len(sentences) < 2:
        raise RuntimeFailure("Summarising needs a text of at least two sentences.")
    # A revision's message comes first: "in 2 sentences, please" overrides the criteria.
    asked = task.revision.message if task.revision else ""
    wanted = re.search(r"(\d+)\s+sentences?", f"{asked} {task.acceptance_criteria} {task.title}")
    count = int(wanted.group(1)) if wanted else max(1, min(5, round(len(sentences) / 4)))
    count = max(1, min(count, len(sentences)))
    scores = _sentence_scores(sentences)
    chosen = sorted(sorted(range(len(sentences)), key=lambda i: -scores[i])[:count])
    summary = " ".join(sentences[i] for i in chosen)
    data = {
        "sentences_in": len(sentences),
        "sentences_out": len(chosen),
        "chosen_indexes": chosen,
        "compression": round(len(summary) / max(1, len(" ".join(sentences))), 3),
    }
    return RunResult(text=summary, data=data)


def verify_against_criteria(task: TaskBrief) -> RunResult:
    """Checks the material against the machine checks and the free-text criteria of the task.

    The market's machine checks (``json_schema``, ``regex``, ``required_fields``) run as the
    market runs them on a delivery (``checks_run``), the material as its text and, parsed, its
    data; then ``min_words``, ``max_words`` and ``must_include``. The free-text criteria are only
    checked for coverage of their content words, and the result says so: a hint, not a judgement.
    """
    material = task.material
    checks = task.checks if isinstance(task.checks, dict) else {}
    results: list[dict[str, Any]] = []

    def add(name: str, passed: bool, evidence: str) -> None:
        results.append({"check": name, "passed": passed, "evidence": evidence})

    data: Any = None
    if "json_schema" in checks or "required_fields" in checks:
        try:
            data = json.loads(material)
        except json.JSONDecodeError as error:
            # Why the data checks below fail; not a check of its own.
            results.append(
                {
                    "check": "json",
                    "passed": None,
                    "evidence": f"not JSON: {error.msg} at line {error.lineno}",
                }
            )
    results.extend(checks_run(checks=checks, text=material, data=data))
    word_count = len(words_of(material))
    if "min_words" in checks:
        add("min_words", word_count >= int(checks["min_words"]), f"{word_count} words")
    if "max_words" in checks:
        add("max_words", word_count <= int(checks["max_words"]), f"{word_count} words")
    for phrase in checks.get("must_include", []):
        add(f"includes {phrase!r}", phrase.lower() in material.lower(), "")
    criteria_terms = sorted(
        {w for w in words_of(task.acceptance_criteria) if w not in STOPWORDS and len(w) > 3}
    )
    if criteria_terms:
        present = set(words_of(material))
        covered = [term for term in criteria_terms if term in present]
        absent = ", ".join(term for term in criteria_terms if term not in present)
        coverage = len(covered) / len(criteria_terms)
        results.append(
            {
                "check": "criteria_coverage",
                "passed": None,
                "evidence": f"{len(covered)} of {len(criteria_terms)} criteria terms appear "
                f"({coverage:.0%}); missing: {absent or 'none'}",
            }
        )
    machine = [result for result in results if result["passed"] is not None]
    passed = all(result["passed"] for result in machine)
    verdict = "passed" if passed else "failed"
    text = (
        f"Verification {verdict}: {sum(1 for r in machine if r['passed'])} of {len(machine)} "
        "machine checks passed."
    )
    if not machine:
        text = "No machine checks were defined; only the criteria coverage hint was computed."
    return RunResult(text=text, data={"passed": passed, "results": results})


def no_op(task: TaskBrief) -> RunResult:
    return RunResult(text="done", data={"task": task.task_id})


@dataclass(frozen=True)
class BuiltinAgent:
    slug: str
    name: str
    description: str
    tags: tuple[str, ...]
    input_formats: tuple[str, ...]
    output_formats: tuple[str, ...]
    function: Callable[[TaskBrief], RunResult]
    limitations: str = ""
    default_price: int = 10
    extra: dict[str, Any] = field(default_factory=dict)


BUILTIN_AGENTS: dict[str, BuiltinAgent] = {
    agent.slug: agent
    for agent in (
        BuiltinAgent(
            slug="text-stats",
            name="Text statistics",
            description="Counts words, sentences and paragraphs, estimates reading time and "
            "Flesch reading ease, and extracts the most frequent keywords and key phrases of an "
            "English text.",
            tags=("text", "statistics", "keywords", "readability"),
            input_formats=("text/plain",),
            output_formats=("application/json", "text/plain"),
            function=text_stats,
            limitations="English only; keywords are frequency-based, not semantic.",
        ),
        BuiltinAgent(
            slug="json-csv",
            name="JSON and CSV converter",
            description="Converts CSV to typed JSON records and JSON records to CSV, and "
            "validates the data against the task's JSON schema, listing every error.",
            tags=("json", "csv", "data", "validation", "transformation"),
            input_formats=("text/csv", "application/json"),
            output_formats=("application/json", "text/csv"),
            function=json_csv_transform,
            limitations="Flat records only; nested values are written as JSON strings in CSV.",
        ),
        BuiltinAgent(
            slug="summarizer",
            name="Extractive summariser",
            description="Summarises reports, articles, meeting notes and documents: returns "
            "their most important sentences (TextRank over word overlap), in the original order, "
            "as a short summary of the length you ask for ('in N sentences').",
            tags=("summarization", "summary", "text", "extractive"),
            input_formats=("text/plain",),
            output_formats=("text/plain",),
            function=summarize,
            limitations="Extractive: it never rephrases; quality drops on very short texts.",
        ),
        BuiltinAgent(
            slug="verifier",
            name="Acceptance verifier",
            description="Checks a deliverable against the task's machine checks (JSON schema, "
            "regex, required fields, word counts, required phrases) and reports each result "
            "with its evidence, plus how much of the free-text criteria it mentions.",
            tags=("verification", "quality", "json-schema", "review"),
            input_formats=("text/plain", "application/json"),
            output_formats=("application/json",),
            function=verify_against_criteria,
            limitations="Free-text criteria are only checked for coverage of their words.",
        ),
        BuiltinAgent(
            slug="no-op",
            name="No-op",
            description="Does nothing and answers 'done' at once: for benchmarks and tests.",
            tags=("test",),
            input_formats=("text/plain",),
            output_formats=("text/plain",),
            function=no_op,
            default_price=1,
        ),
    )
}


def run(context: RunContext) -> RunResult:
    slug = str(context.agent_config.get("builtin", ""))
    agent = BUILTIN_AGENTS.get(slug)
    if agent is None:
        known = ", ".join(sorted(BUILTIN_AGENTS))
        raise RuntimeFailure(f"Unknown built-in agent {slug!r}; known: {known}.")
    context.record(
        kind="tool_call", name=f"builtin:{slug}", inputs={"characters": len(context.task.material)}
    )
    # A built-in agent may declare a fixed price per run; it is metered like any other cost.
    context.charge(cost=int(context.agent_config.get("price_per_run", 0)))
    result = agent.function(context.task)
    context.record(
        kind="message", name="result", outputs={"text": result.text[:2000], "data": result.data}
    )
    return result
