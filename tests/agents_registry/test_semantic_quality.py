"""Semantic quality of the default embedder on a hand-written market (MiniLM in numpy)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from agents_registry.embeddings import embed_texts
from agents_registry.selectors import match_agents
from tests.agents_registry.conftest import make_agent
from tests.agents_registry.semantic_fixture import AGENTS, TASKS


def test_the_fixture_is_as_large_as_promised() -> None:
    assert len(AGENTS) >= 30
    assert len(TASKS) >= 50
    assert {slug for _, slug in TASKS} <= set(AGENTS)


@pytest.mark.django_db
def test_the_right_agent_is_in_the_top_3_for_at_least_90_percent_of_tasks(alice: User) -> None:
    for slug, description in AGENTS.items():
        make_agent(alice, slug, description, price=100)
    vectors = embed_texts([text for text, _ in TASKS])
    hits, misses = 0, []
    for (text, expected), vector in zip(TASKS, vectors, strict=True):
        result = match_agents(embedding=vector, budget=1000, limit=3, weights={"exploration": 0.0})
        top = [candidate.agent.slug for candidate in result.candidates]
        if expected in top:
            hits += 1
        else:
            misses.append((text, expected, top))
    share = hits / len(TASKS)
    assert share >= 0.9, f"top-3 hit rate {share:.2f}; misses: {misses}"


def test_related_sentences_score_much_higher_than_unrelated_ones() -> None:
    vectors = embed_texts(
        [
            "Translate this rental agreement from German into English",
            "I need an English version of a German lease contract",
            "Bake a chocolate cake for a birthday party",
        ]
    )
    related, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert related > 0.6
    assert unrelated < 0.2
