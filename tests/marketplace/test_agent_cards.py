"""A2A Agent Cards served by the market validate against ``a2a-sdk``'s model (and its client's
parser), carry the agent's skills, price and reputation, and name the market as the payment and
escrow point; the market's own card lists its agents."""

from __future__ import annotations

import pytest
from a2a.client.card_resolver import parse_agent_card
from a2a.types import AgentCard
from a2a.utils.proto_utils import validate_proto_required_fields
from django.contrib.auth.models import User
from google.protobuf import json_format

from agents_registry.embeddings import embed_text, embedding_model_id
from agents_registry.services import agent_register, profile_create
from marketplace.protocols.agent_cards import listed_agents
from tests.conftest import participant_of

pytestmark = pytest.mark.django_db

DESCRIPTION = "Translates restaurant menus and recipes from French into English."


@pytest.fixture
def translator(bob: User, settings: object) -> object:
    settings.MCP_URL = "http://127.0.0.1:8002/mcp"
    agent = agent_register(owner=participant_of(bob), name="Menu Translator")
    profile_create(
        agent=agent,
        actor=participant_of(bob),
        description=DESCRIPTION,
        tags=["translation", "french", "menus"],
        input_formats=["text", "pdf"],
        output_formats=["markdown"],
        price_per_task=300,
        expected_latency_seconds=600,
        embedding=embed_text(DESCRIPTION).tolist(),
        embedding_model=embedding_model_id(),
    )
    return agent


def validated(body: dict) -> AgentCard:
    """Strictly per the SDK's model (no unknown field), then as its client parses cards."""
    strict = {key: value for key, value in body.items() if key not in LEGACY_FIELDS}
    card = json_format.ParseDict(strict, AgentCard())
    validate_proto_required_fields(card)
    assert parse_agent_card(dict(body)) == card
    return card


# The 0.3 fields the SDK adds beside the 1.0 ones, so older clients read the card too.
LEGACY_FIELDS = {
    "url",
    "preferredTransport",
    "protocolVersion",
    "additionalInterfaces",
    "security",
    "supportsAuthenticatedExtendedCard",
}


def test_an_agents_card_at_its_url_validates_and_says_how_to_hire_it(
    client: object, translator: object
) -> None:
    response = client.get(f"/agents/{translator.slug}/.well-known/agent-card.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    card = validated(response.json())
    assert (card.name, card.description, card.version) == ("Menu Translator", DESCRIPTION, "1")
    [interface] = card.supported_interfaces
    assert (interface.url, interface.protocol_binding, interface.tenant) == (
        "http://127.0.0.1:8002/a2a",
        "JSONRPC",
        translator.slug,
    )
    assert card.default_input_modes == ["text/plain", "application/pdf"]
    assert card.default_output_modes == ["text/markdown"]
    skills = {skill.id: skill for skill in card.skills}
    assert list(skills[translator.slug].tags) == ["translation", "french", "menus"]
    assert {f"{translator.slug}.french", f"{translator.slug}.menus"} <= set(skills)
    [market] = card.capabilities.extensions
    assert market.required and market.uri.endswith("/a2a/extensions/market/v1")
    params = json_format.MessageToDict(market.params)
    assert params["pricing"]["price_per_task"] == 300
    assert params["reputation"]["score"] == 0.5 and params["reputation"]["outcomes"] == 0
    assert params["payment"]["currency"] == "credits"
    assert params["payment"]["mcp"] == "http://127.0.0.1:8002/mcp"
    assert "market_api_key" in card.security_schemes
    assert client.get("/a2a/extensions/market/v1").json()["uri"] == "/a2a/extensions/market/v1"


def test_the_markets_card_lists_the_agents_and_unlisted_ones_have_none(
    client: object, translator: object, alice: User
) -> None:
    bare = agent_register(owner=participant_of(alice), name="No profile yet")
    # The directory's order is Agent.reputation, computed by the database.
    type(translator).objects.filter(pk=translator.pk).update(
        outcomes_total=7, outcomes_accepted=4, outcomes_revised=2
    )
    translator.refresh_from_db()
    [(listed, profile)] = listed_agents()
    assert listed == translator
    assert profile.reputation == pytest.approx(translator.reputation)
    card = validated(client.get("/.well-known/agent-card.json").json())
    assert card.name == "Agent marketplace"
    assert card.supported_interfaces[0].tenant == ""
    directory = json_format.MessageToDict(card.capabilities.extensions[0].params)["agents"]
    assert [entry["slug"] for entry in directory] == [translator.slug]
    assert directory[0]["card"].endswith(f"/agents/{translator.slug}/.well-known/agent-card.json")
    assert client.get(f"/agents/{bare.slug}/.well-known/agent-card.json").status_code == 404
    translator.status = "suspended"
    translator.save(update_fields=["status"])
    assert client.get(f"/agents/{translator.slug}/.well-known/agent-card.json").status_code == 404
