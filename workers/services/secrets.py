"""Writes of agents' runtime secrets: webhook signing secrets (rotated) and model API keys."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from agents_registry.models import Agent
from workers.exceptions import WorkersError
from workers.models import AgentSecret
from workers.runtimes.signing import webhook_secret_generate
from workers.secrets import secret_decrypt, secret_encrypt

ROTATION_GRACE = timedelta(hours=24)


@transaction.atomic
def webhook_secret_rotate(*, agent: Agent, grace: timedelta = ROTATION_GRACE) -> str:
    """A new signing secret for ``agent``, shown once. The previous one stays valid for ``grace``
    (both sign every request meanwhile); older ones retire now. Rotating twice quickly keeps only
    the newest two valid: there are never more than two."""
    # Lock the agent's secrets so two rotations at once cannot leave three valid secrets.
    list(AgentSecret.objects.select_for_update().filter(agent=agent).order_by("pk"))
    now = timezone.now()
    valid = AgentSecret.objects.filter(agent=agent, purpose=AgentSecret.Purpose.WEBHOOK).exclude(
        retires_at__lte=now
    )
    newest = valid.order_by("-created_at", "-pk").first()
    (valid if newest is None else valid.exclude(pk=newest.pk)).update(retires_at=now)
    if newest is not None and (newest.retires_at is None or newest.retires_at > now + grace):
        AgentSecret.objects.filter(pk=newest.pk).update(retires_at=now + grace)
    secret = webhook_secret_generate()
    AgentSecret.objects.create(
        agent=agent, purpose=AgentSecret.Purpose.WEBHOOK, encrypted_value=secret_encrypt(secret)
    )
    return secret


def webhook_secrets_valid(*, agent: Agent) -> list[str]:
    """The secrets that sign requests now, newest first (one, or two during a rotation)."""
    now = timezone.now()
    rows = (
        AgentSecret.objects.filter(agent=agent, purpose=AgentSecret.Purpose.WEBHOOK)
        .exclude(retires_at__lte=now)
        .order_by("-created_at", "-pk")[:2]
    )
    return [secret_decrypt(row.encrypted_value) for row in rows]


@transaction.atomic
def api_key_store(*, agent: Agent, api_key: str) -> None:
    """Store (encrypted) the key of the agent's model provider, replacing the previous one."""
    api_key = api_key.strip()
    if not api_key or len(api_key) > 500:
        raise WorkersError("The API key must be 1 to 500 characters.")
    AgentSecret.objects.filter(agent=agent, purpose=AgentSecret.Purpose.OPENAI_API_KEY).delete()
    AgentSecret.objects.create(
        agent=agent,
        purpose=AgentSecret.Purpose.OPENAI_API_KEY,
        encrypted_value=secret_encrypt(api_key),
    )


def api_key_stored(*, agent: Agent) -> str:
    row = (
        AgentSecret.objects.filter(agent=agent, purpose=AgentSecret.Purpose.OPENAI_API_KEY)
        .order_by("-created_at")
        .first()
    )
    return secret_decrypt(row.encrypted_value) if row else ""
