"""A2A Agent Cards (``a2a-sdk``'s model) of the market and of every listed agent.

* ``/.well-known/agent-card.json``: the market itself, an A2A agent to which a task can be sent
  (it is posted with its bounty in escrow, open for bids), with the directory of its agents in
  the ``agent-directory`` extension;
* ``/agents/<slug>/.well-known/agent-card.json`` (the agent's own URL, where a card resolver given
  the agent's page looks): one agent, with skills from its current capability profile, its price
  per task and reputation, and the market as the payment and escrow point (the ``market``
  extension, required: a client hires it through the market, paying into escrow, never directly).

Both cards' interface is the market's A2A endpoint (JSON-RPC, ``workers.a2a_server``); an
agent's card names the agent as the ``tenant``, so a message sent there hires that agent.
"""

from __future__ import annotations

from typing import Any

from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentExtension,
    AgentInterface,
    AgentProvider,
    AgentSkill,
    APIKeySecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from django.conf import settings
from django.db.models import ExpressionWrapper, F, FloatField
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.utils.text import slugify
from django.views.decorators.http import require_GET
from google.protobuf.struct_pb2 import Struct

from agents_registry.models import Agent, CapabilityProfile
from agents_registry.reputation import PRIOR_MEAN, PRIOR_WEIGHT

PROTOCOL_VERSION = "1.0"
MARKET_EXTENSION = "/a2a/extensions/market/v1"
DIRECTORY_EXTENSION = "/a2a/extensions/agent-directory/v1"
DIRECTORY_LIMIT = 200
SECURITY = "market_api_key"
# What an agent's listed formats mean as the media types A2A's modes are.
MEDIA_TYPES = {
    "text": "text/plain",
    "txt": "text/plain",
    "markdown": "text/markdown",
    "md": "text/markdown",
    "json": "application/json",
    "csv": "text/csv",
    "pdf": "application/pdf",
    "html": "text/html",
    "png": "image/png",
    "jpeg": "image/jpeg",
    "jpg": "image/jpeg",
    "zip": "application/zip",
}


def _site() -> str:
    return settings.SITE_URL.rstrip("/")


def mcp_url() -> str:
    return settings.MCP_URL or f"{_site()}/mcp"


def a2a_url() -> str:
    """The market's A2A endpoint: beside the MCP server (the same process), at ``/a2a``."""
    base = mcp_url()
    return (base[: -len("/mcp")] if base.endswith("/mcp") else _site()) + "/a2a"


def _struct(values: dict[str, Any]) -> Struct:
    struct = Struct()
    struct.update(values)
    return struct


def _modes(formats: list[str], default: list[str]) -> list[str]:
    modes = [MEDIA_TYPES.get(value.lower(), value) for value in formats if value]
    modes = [mode for mode in modes if "/" in mode]
    return list(dict.fromkeys(modes)) or default


def _security() -> dict[str, Any]:
    scheme = SecurityScheme(
        api_key_security_scheme=APIKeySecurityScheme(
            location="header",
            name="Authorization",
            description="`Api-Key <prefix>.<secret>`: an API key of your market account.",
        )
    )
    return {
        "security_schemes": {SECURITY: scheme},
        "security_requirements": [SecurityRequirement(schemes={SECURITY: StringList()})],
    }


def _escrow_terms() -> dict[str, Any]:
    return {
        "currency": "credits",
        "escrow": "The bounty is locked in the task's escrow when the task is posted.",
        "settles_on": "acceptance of a delivery (or the end of the review window)",
        "review_window_hours": settings.REVIEW_WINDOW_HOURS,
        "platform_fee_basis_points": settings.PLATFORM_FEE_BASIS_POINTS,
        "disputes": "A rejection opens a dispute that staff resolve by splitting the escrow.",
        "buy_credits": f"{_site()}/wallet/",
        "api": f"{_site()}/api/v1/",
        "mcp": mcp_url(),
    }


def agent_card(agent: Agent, profile: CapabilityProfile) -> AgentCard:
    """The Agent Card of ``agent`` from its current capability ``profile``."""
    page = f"{_site()}/agents/{agent.slug}/"
    tags = list(profile.tags) or ["general"]
    skills = [
        AgentSkill(
            id=agent.slug,
            name=agent.name,
            description=profile.description,
            tags=tags,
            input_modes=_modes(profile.input_formats, []),
            output_modes=_modes(profile.output_formats, []),
        )
    ]
    skills += [
        AgentSkill(
            id=f"{agent.slug}.{slugify(tag) or index}",
            name=tag,
            description=f"{tag}, as part of what {agent.name} does: {profile.description[:300]}",
            tags=[tag],
        )
        for index, tag in enumerate(profile.tags)
    ]
    pricing = {
        "price_per_task": profile.price_per_task,
        "price_per_unit": profile.price_per_unit,
        "unit_name": profile.unit_name or None,
        "expected_latency_seconds": profile.expected_latency_seconds,
    }
    reputation = {
        "score": round(agent.reputation, 4),
        "outcomes": agent.outcomes_total,
        "accepted": agent.outcomes_accepted,
        "revised": agent.outcomes_revised,
        "mean_latency_seconds": agent.mean_latency_seconds,
    }
    market = AgentExtension(
        uri=f"{_site()}{MARKET_EXTENSION}",
        description="Hire this agent through the market: the price is paid into the market's "
        "escrow when the task is sent, and settled to the agent when you accept its work.",
        required=True,
        params=_struct(
            {
                "market": _site(),
                "agent": {"slug": agent.slug, "page": page, "runtime": agent.runtime},
                "pricing": pricing,
                "reputation": reputation,
                "payment": _escrow_terms(),
                "limitations": profile.limitations or None,
                "policy_flags": list(profile.policy_flags),
            }
        ),
    )
    return AgentCard(
        name=agent.name,
        description=profile.description,
        version=str(profile.version),
        provider=AgentProvider(
            organization=f"Agent marketplace · {agent.owner.display_name}", url=_site()
        ),
        documentation_url=page,
        supported_interfaces=[
            AgentInterface(
                url=a2a_url(),
                protocol_binding="JSONRPC",
                protocol_version=PROTOCOL_VERSION,
                tenant=agent.slug,
            )
        ],
        capabilities=AgentCapabilities(streaming=False, extensions=[market]),
        default_input_modes=_modes(profile.input_formats, ["text/plain"]),
        default_output_modes=_modes(profile.output_formats, ["text/plain", "application/json"]),
        skills=skills,
        **_security(),
    )


def listed_agents(*, limit: int = DIRECTORY_LIMIT) -> list[tuple[Agent, CapabilityProfile]]:
    """Active agents with a current profile, the most reputable first (``Agent.reputation``,
    computed by the database so that only the page is read)."""
    successes = F("agent__outcomes_accepted") + 0.5 * F("agent__outcomes_revised")
    reputation = ExpressionWrapper(
        (successes + PRIOR_MEAN * PRIOR_WEIGHT) / (F("agent__outcomes_total") + PRIOR_WEIGHT),
        output_field=FloatField(),
    )
    profiles = (
        CapabilityProfile.objects.filter(is_current=True, agent__status=Agent.Status.ACTIVE)
        .select_related("agent__owner")
        .defer("embedding")
        .annotate(reputation=reputation)
        .order_by("-reputation", "agent__name")[:limit]
    )
    return [(profile.agent, profile) for profile in profiles]


def market_card() -> AgentCard:
    """The market's own card: send it a task (with a bounty) to post it, open for bids."""
    directory = [
        {
            "name": agent.name,
            "slug": agent.slug,
            "card": f"{_site()}/agents/{agent.slug}/.well-known/agent-card.json",
            "price_per_task": profile.price_per_task,
            "reputation": round(agent.reputation, 4),
            "tags": list(profile.tags),
        }
        for agent, profile in listed_agents()
    ]
    extensions = [
        AgentExtension(
            uri=f"{_site()}{DIRECTORY_EXTENSION}",
            description="The market's agents: each has its own Agent Card at its URL.",
            params=_struct(
                {"agents": directory, "directory": f"{_site()}/agents/", "api": "/api/v1/agents/"}
            ),
        ),
        AgentExtension(
            uri=f"{_site()}{MARKET_EXTENSION}",
            description="Tasks sent here are posted to the market with their bounty in escrow "
            "(metadata `bounty`, in credits) and settled when you accept a delivery.",
            required=True,
            params=_struct({"market": _site(), "payment": _escrow_terms()}),
        ),
    ]
    return AgentCard(
        name="Agent marketplace",
        description="A task market where people and AI agents post work with a credit bounty "
        "held in escrow, bid on it, deliver and get paid on acceptance.",
        version="1.0.0",
        provider=AgentProvider(organization="Agent marketplace", url=_site()),
        documentation_url=f"{_site()}/api/v1/docs/",
        supported_interfaces=[
            AgentInterface(
                url=a2a_url(), protocol_binding="JSONRPC", protocol_version=PROTOCOL_VERSION
            )
        ],
        capabilities=AgentCapabilities(streaming=False, extensions=extensions),
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/plain", "application/json"],
        skills=[
            AgentSkill(
                id="post-task",
                name="Post a task",
                description="Post a task with a bounty; matched agents bid, the best is awarded, "
                "and you accept (or ask for a revision of) what it delivers.",
                tags=["market", "escrow", "hire agents"],
                examples=["Translate this menu into English. (metadata: bounty 300)"],
            )
        ],
        **_security(),
    )


def _card_response(card: AgentCard) -> JsonResponse:
    response = JsonResponse(agent_card_to_dict(card))
    response["Cache-Control"] = "public, max-age=60"
    response["Access-Control-Allow-Origin"] = "*"  # public metadata, read by browser clients too
    return response


@require_GET
def market_card_view(request: HttpRequest) -> JsonResponse:
    return _card_response(market_card())


@require_GET
def agent_card_view(request: HttpRequest, slug: str) -> JsonResponse:
    agent = get_object_or_404(
        Agent.objects.select_related("owner").exclude(status=Agent.Status.SUSPENDED), slug=slug
    )
    profile = get_object_or_404(
        CapabilityProfile.objects.defer("embedding"), agent=agent, is_current=True
    )
    return _card_response(agent_card(agent, profile))


EXTENSIONS = {
    "market": {
        "uri": MARKET_EXTENSION,
        "summary": "The market is the payment and escrow point: a client hires an agent by "
        "sending its task to the market's A2A endpoint (the card's interface, with the agent as "
        "tenant), authenticated with an API key of its market account. The price is locked in "
        "escrow when the task is posted and paid to the agent, less the platform fee, when the "
        "client accepts the delivery; a rejection opens a dispute that staff resolve.",
        "params": {
            "pricing": "price_per_task (credits), price_per_unit and unit_name, latency",
            "reputation": "score (Bayesian acceptance rate), outcomes, accepted, revised",
            "payment": "currency, escrow and settlement terms, fee, where to buy credits",
        },
        "message_metadata": {"bounty": "credits to lock in escrow (default: the price)"},
        "replies": "To a delivered task (input-required): `accept`, `reject: <reason>`, or what "
        "to change (a revision request).",
    },
    "agent-directory": {
        "uri": DIRECTORY_EXTENSION,
        "summary": "The market's listed agents, each with the URL of its own Agent Card.",
    },
}


@require_GET
def extension_view(request: HttpRequest, name: str) -> JsonResponse:
    """What an extension of these cards means (its URI is this page)."""
    if name not in EXTENSIONS:
        return JsonResponse(
            {"error": {"code": "not_found", "message": f"No extension {name!r}.", "fields": {}}},
            status=404,
        )
    return JsonResponse(EXTENSIONS[name])
