"""Writes for outside A2A agents run as hosted agents: registering one from its Agent Card (a
revision request goes back to it through the market's revision hook, as for every hosted agent).

An owner gives the card's URL (or the agent's base URL); the market fetches the card through the
SSRF-safe chokepoint, validates it with ``a2a-sdk``'s model, keeps its JSON-RPC interface as the
endpoint, and registers the agent with a capability profile made from the card (its description
and skills) and the owner's price. From then on it is matched, bids and is awarded like any hosted
agent, and ``workers.runtimes.a2a`` runs its work.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.db import transaction

from agents_registry.models import Agent, Participant
from agents_registry.services import agent_register, profile_create
from workers.exceptions import EndpointRefused, InvalidInput, RuntimeFailure
from workers.runtimes.a2a import USER_AGENT, card_from_json
from workers.runtimes.http_safety import endpoint_validate, safe_request

logger = logging.getLogger(__name__)

CARD_PATH = "/.well-known/agent-card.json"
CARD_MAX_BYTES = 256 * 1024
CARD_TIMEOUT_SECONDS = 10.0


def card_url_normalized(url: str) -> str:
    """The card's URL: as given when it names a JSON document, else the agent's well-known one."""
    url = (url or "").strip()
    path = url.split("?", 1)[0]
    return url if path.endswith(".json") else url.rstrip("/") + CARD_PATH


def a2a_card_fetch(*, card_url: str) -> tuple[Any, dict[str, Any], str]:
    """The agent's card (the SDK's model), its JSON, and its JSON-RPC endpoint; InvalidInput
    naming ``card_url`` with what is wrong."""

    def refused(message: str) -> InvalidInput:
        return InvalidInput(message, {"card_url": [message]})

    url = card_url_normalized(card_url)
    try:
        response = safe_request(
            "GET",
            url,
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            timeout=CARD_TIMEOUT_SECONDS,
            max_response_bytes=CARD_MAX_BYTES,
        )
    except EndpointRefused as error:
        raise refused(str(error)) from error
    except RuntimeFailure as error:
        raise refused(f"The Agent Card at {url} could not be fetched: {error}") from error
    if response.status != 200:
        raise refused(f"{url} answered {response.status}; an Agent Card answers 200 with JSON.")
    try:
        data = json.loads(response.body)
        card = card_from_json(data)
    except ValueError as error:
        raise refused(f"{url}: {error}") from error
    interfaces = [
        interface
        for interface in card.supported_interfaces
        if interface.protocol_binding.upper() == "JSONRPC"
    ]
    if not interfaces:
        bindings = ", ".join(i.protocol_binding for i in card.supported_interfaces) or "none"
        raise refused(
            f"The agent offers {bindings}; the market speaks A2A over JSON-RPC (binding JSONRPC)."
        )
    try:
        endpoint_validate(interfaces[0].url)
    except EndpointRefused as error:
        raise refused(f"The card's JSON-RPC endpoint is refused: {error}") from error
    return card, data, interfaces[0].url


def _profile_from_card(card: Any) -> dict[str, Any]:
    skills = list(card.skills)
    lines = [card.description.strip()]
    lines += [f"- {skill.name}: {skill.description}".strip() for skill in skills]
    tags: list[str] = []
    for skill in skills:
        for tag in [skill.name, *skill.tags]:
            tag = tag.strip()[:40]
            if tag and tag not in tags:
                tags.append(tag)

    def formats(modes: Any) -> list[str]:
        return list(dict.fromkeys(mode.strip()[:40] for mode in modes if mode.strip()))[:20]

    return {
        "description": "\n".join(lines)[:4000],
        "tags": tags[:20],
        "input_formats": formats(card.default_input_modes),
        "output_formats": formats(card.default_output_modes),
    }


def a2a_agent_register(
    *,
    owner: Participant,
    card_url: str,
    price_per_task: int,
    expected_latency_seconds: int = 600,
    concurrency_limit: int = 4,
    name: str = "",
    time_limit_seconds: int | None = None,
) -> Agent:
    """Register the outside A2A agent whose card is at ``card_url`` as ``owner``'s hosted agent,
    with a first capability profile from the card. Refusals write nothing."""
    if owner.kind != Participant.Kind.HUMAN:
        raise InvalidInput("Agents are registered by their human owners.")
    card, _, endpoint = a2a_card_fetch(card_url=card_url)
    config: dict[str, Any] = {
        "card_url": card_url_normalized(card_url),
        "endpoint": endpoint,
        "protocol_version": next(
            i.protocol_version for i in card.supported_interfaces if i.url == endpoint
        ),
        "name": card.name,
        "skills": [skill.id for skill in card.skills],
    }
    if time_limit_seconds:
        config["soft_time_limit_seconds"] = int(time_limit_seconds)
        config["hard_time_limit_seconds"] = int(time_limit_seconds) + 30
    with transaction.atomic():
        agent = agent_register(
            owner=owner,
            name=(name or card.name).strip()[:120],
            runtime=Agent.Runtime.A2A,
            runtime_config=config,
            concurrency_limit=concurrency_limit,
        )
        profile_create(
            agent=agent,
            actor=owner,
            price_per_task=price_per_task,
            expected_latency_seconds=expected_latency_seconds,
            **_profile_from_card(card),
        )
    return agent
