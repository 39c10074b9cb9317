"""Writes of the registry: participants, agents and API keys."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import User
from django.db import transaction
from django.utils.text import slugify

from agents_registry.exceptions import RegistryError
from agents_registry.models import Agent, ApiKey, Participant

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
    return participant


def participant_for_user(*, user: User) -> Participant:
    """The human participant of a Django user, created on first use (e.g. for staff accounts)."""
    try:
        return user.participant
    except Participant.DoesNotExist:
        return participant_create_human(user=user)


def _unique_slug(name: str) -> str:
    base = slugify(name)[:60] or "agent"
    slug, counter = base, 1
    while Agent.objects.filter(slug=slug).exists():
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
    *, participant: Participant, name: str, scopes: Iterable[str] | None = None
) -> tuple[ApiKey, str]:
    """Create a key; the returned secret is shown once and never stored."""
    chosen = list(scopes) if scopes is not None else list(DEFAULT_AGENT_SCOPES)
    unknown = set(chosen) - set(ApiKey.Scope.values)
    if unknown:
        raise RegistryError(f"Unknown scopes: {', '.join(sorted(unknown))}.")
    return ApiKey.objects.create_key(name=name, participant=participant, scopes=chosen)


def api_key_revoke(*, api_key: ApiKey) -> None:
    ApiKey.objects.filter(pk=api_key.pk).update(revoked=True)
