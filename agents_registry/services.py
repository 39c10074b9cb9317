"""Writes of the registry: participants, agents and API keys."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils.text import slugify

from agents_registry.exceptions import NotAllowed, RegistryError
from agents_registry.models import Agent, ApiKey, Participant
from ledger.services import promo_grant, wallet_open

DEFAULT_AGENT_SCOPES = [
    ApiKey.Scope.TASKS_READ,
    ApiKey.Scope.TASKS_WRITE,
    ApiKey.Scope.BIDS_WRITE,
    ApiKey.Scope.DELIVERIES_WRITE,
    ApiKey.Scope.WALLET_READ,
    ApiKey.Scope.TRACES_WRITE,
]


@transaction.atomic
def participant_create_human(*, user: User, display_name: str = "") -> Participant:
    participant, _ = Participant.objects.get_or_create(
        user=user,
        defaults={
            "kind": Participant.Kind.HUMAN,
            "display_name": display_name or user.get_username(),
        },
    )
    wallet_open(owner_ref=participant.ledger_ref)
    if settings.STARTER_CREDITS:
        promo_grant(
            owner_ref=participant.ledger_ref,
            amount=settings.STARTER_CREDITS,
            idempotency_key=f"starter:{participant.pk}",
            memo="Starter credits",
        )
    return participant


def participant_for_user(*, user: User) -> Participant:
    """The human participant of a Django user, created on first use (e.g. for staff accounts)."""
    try:
        return user.participant
    except Participant.DoesNotExist:
        return participant_create_human(user=user)


# Page and API paths under /agents/ that an agent's slug must not shadow.
RESERVED_AGENT_SLUGS = frozenset({"new", "match", "match-preview"})


def _unique_slug(name: str) -> str:
    base = slugify(name)[:60] or "agent"
    slug, counter = base, 1
    while slug in RESERVED_AGENT_SLUGS or Agent.objects.filter(slug=slug).exists():
        counter += 1
        slug = f"{base}-{counter}"
    return slug


@transaction.atomic
def agent_register(
    *,
    owner: Participant,
    name: str,
    runtime: str = Agent.Runtime.EXTERNAL,
    runtime_config: dict | None = None,
    concurrency_limit: int = 4,
    slug: str | None = None,
) -> Agent:
    participant = Participant.objects.create(kind=Participant.Kind.AGENT, display_name=name)
    wallet_open(owner_ref=participant.ledger_ref)
    return Agent.objects.create(
        participant=participant,
        owner=owner,
        name=name,
        slug=slug or _unique_slug(name),
        runtime=runtime,
        runtime_config=runtime_config or {},
        concurrency_limit=concurrency_limit,
    )


def api_key_issue(
    *,
    participant: Participant,
    name: str,
    scopes: Iterable[str] | None = None,
    issuer_scopes: Collection[str] | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; the returned secret is shown once and never stored.

    ``issuer_scopes``: the scopes of the API key that asks. A key never makes a key with a scope
    it lacks (an ``agents:write`` key would otherwise mint itself every scope); ``None`` is the
    owner's own session, which may grant any scope."""
    chosen = list(dict.fromkeys(scopes)) if scopes is not None else list(DEFAULT_AGENT_SCOPES)
    unknown = set(chosen) - set(ApiKey.Scope.values)
    if unknown:
        raise RegistryError(f"Unknown scopes: {', '.join(sorted(unknown))}.")
    if issuer_scopes is not None:
        lacking = [scope for scope in chosen if scope not in issuer_scopes]
        if lacking:
            raise NotAllowed(
                f"This API key lacks {', '.join(lacking)}, so it cannot grant them; ask for "
                f"scopes within its own ({', '.join(sorted(issuer_scopes)) or 'none'}), or issue "
                "the key from the owner's session or a personal token that has them."
            )
    api_key, secret = ApiKey.objects.create_key(name=name, participant=participant, scopes=chosen)
    assert isinstance(api_key, ApiKey)  # the library annotates its abstract base
    return api_key, secret


# What a person's token may do when the page's defaults are kept: read, post and review tasks,
# read the wallet.
DEFAULT_PERSONAL_SCOPES = [
    ApiKey.Scope.TASKS_READ,
    ApiKey.Scope.TASKS_WRITE,
    ApiKey.Scope.WALLET_READ,
]


def personal_token_issue(
    *,
    participant: Participant,
    name: str,
    scopes: Iterable[str],
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """A person's own API token (a personal access token): an API key of the human, with the
    scopes chosen, to act through the API as that person (award, accept, fund agents) without a
    browser session. Sent like an agent's key: ``Authorization: Api-Key <token>``."""
    if participant.kind != Participant.Kind.HUMAN:
        raise NotAllowed("Personal tokens belong to people; agents get keys from their owner.")
    chosen = list(scopes)
    if not chosen:
        raise RegistryError("Choose at least one scope.")
    api_key, secret = api_key_issue(participant=participant, name=name, scopes=chosen)
    if expires_at is not None:
        ApiKey.objects.filter(pk=api_key.pk).update(expiry_date=expires_at)
        api_key.expiry_date = expires_at
    return api_key, secret


def api_key_revoke(*, api_key: ApiKey) -> None:
    ApiKey.objects.filter(pk=api_key.pk).update(revoked=True)


# The registry's other writes live in their own modules; callers import them all from here.
from agents_registry.services_funding import agent_wallet_transfer  # noqa: E402
from agents_registry.services_outcomes import (  # noqa: E402
    decision_choosing,
    decision_record_auction,
    decision_record_create,
    outcome_record,
)
from agents_registry.services_profiles import (  # noqa: E402
    agent_can_edit,
    agent_load_change,
    agent_set_status,
    profile_create,
    profile_embed,
)
from agents_registry.services_skills import (  # noqa: E402
    skill_publish,
    skill_royalty_shares,
    skill_usage_record,
    skill_version_embed,
)

__all__ = [
    "DEFAULT_AGENT_SCOPES",
    "DEFAULT_PERSONAL_SCOPES",
    "agent_can_edit",
    "agent_load_change",
    "agent_register",
    "agent_set_status",
    "agent_wallet_transfer",
    "api_key_issue",
    "api_key_revoke",
    "decision_choosing",
    "decision_record_auction",
    "decision_record_create",
    "outcome_record",
    "participant_create_human",
    "participant_for_user",
    "personal_token_issue",
    "profile_create",
    "profile_embed",
    "skill_publish",
    "skill_royalty_shares",
    "skill_usage_record",
    "skill_version_embed",
]
