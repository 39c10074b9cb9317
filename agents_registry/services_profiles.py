"""Writes of capability profiles, agent status and load (re-exported by ``services``).

Profiles are immutable versions: an edit locks the agent row (so two concurrent edits get
consecutive version numbers instead of a unique violation) and inserts a new current version;
the previous one keeps its vector for audit. Embedding runs in a worker, queued on commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from agents_registry import embeddings, queueing
from agents_registry.exceptions import InvalidInput, NotAllowed
from agents_registry.models import POLICY_FLAGS, Agent, CapabilityProfile, Participant

DESCRIPTION_MIN_CHARS = 20
DESCRIPTION_MAX_CHARS = 4000
LIMITATIONS_MAX_CHARS = 2000
UNIT_NAME_MAX_CHARS = 40
LIST_MAX_ITEMS = 20
LIST_ITEM_MAX_CHARS = 40
PRICE_MAX = 1_000_000_000
LATENCY_MAX_SECONDS = 30 * 24 * 3600
PROFILE_EMBED_TASK = "agents_registry.profile_embed"


def _clean_list(name: str, values: Sequence[str], errors: dict[str, list[str]]) -> list[str]:
    if isinstance(values, str) or not isinstance(values, list | tuple):
        errors[name] = ["Must be a list of short strings."]
        return []
    cleaned = []
    for value in values:
        if not isinstance(value, str) or not value.strip():
            errors[name] = ["Each item must be a non-empty string."]
            return []
        if len(value.strip()) > LIST_ITEM_MAX_CHARS:
            errors[name] = [f"Each item must be at most {LIST_ITEM_MAX_CHARS} characters."]
            return []
        if value.strip() not in cleaned:
            cleaned.append(value.strip())
    if len(cleaned) > LIST_MAX_ITEMS:
        errors[name] = [f"At most {LIST_MAX_ITEMS} items."]
    return cleaned


def _check_int(
    name: str, value: object, *, minimum: int, maximum: int, errors: dict[str, list[str]]
) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        errors[name] = ["Must be a whole number."]
    elif not minimum <= value <= maximum:
        errors[name] = [f"Must be between {minimum} and {maximum}."]


def agent_can_edit(*, agent: Agent, actor: Participant) -> bool:
    """The owner (a human) or the agent itself may edit its profile and keys."""
    return actor.pk in (agent.owner_id, agent.participant_id)


@transaction.atomic
def profile_create(
    *,
    agent: Agent,
    actor: Participant,
    description: str,
    price_per_task: int,
    expected_latency_seconds: int,
    tags: Sequence[str] = (),
    input_formats: Sequence[str] = (),
    output_formats: Sequence[str] = (),
    price_per_unit: int | None = None,
    unit_name: str = "",
    limitations: str = "",
    policy_flags: Sequence[str] = (),
    embedding: Sequence[float] | None = None,
    embedding_model: str = "",
) -> CapabilityProfile:
    """A new current version of ``agent``'s profile. With ``embedding`` (which must come from the
    model in use), it is matchable at once; otherwise a worker embeds it after commit."""
    if not agent_can_edit(agent=agent, actor=actor):
        raise NotAllowed("Only the agent's owner or the agent itself may edit its profile.")
    errors: dict[str, list[str]] = {}
    description = (description or "").strip() if isinstance(description, str) else ""
    if len(description) < DESCRIPTION_MIN_CHARS:
        errors["description"] = [
            f"Describe what the agent does in at least {DESCRIPTION_MIN_CHARS} characters."
        ]
    elif len(description) > DESCRIPTION_MAX_CHARS:
        errors["description"] = [
            f"At most {DESCRIPTION_MAX_CHARS} characters (this one has {len(description)})."
        ]
    limitations = (limitations or "").strip()
    if len(limitations) > LIMITATIONS_MAX_CHARS:
        errors["limitations"] = [f"At most {LIMITATIONS_MAX_CHARS} characters."]
    _check_int("price_per_task", price_per_task, minimum=0, maximum=PRICE_MAX, errors=errors)
    if price_per_unit is not None:
        _check_int("price_per_unit", price_per_unit, minimum=0, maximum=PRICE_MAX, errors=errors)
        if not (unit_name or "").strip():
            errors["unit_name"] = ["Name the unit that price_per_unit is charged for."]
        elif len(unit_name.strip()) > UNIT_NAME_MAX_CHARS:
            errors["unit_name"] = [f"At most {UNIT_NAME_MAX_CHARS} characters."]
    _check_int(
        "expected_latency_seconds",
        expected_latency_seconds,
        minimum=1,
        maximum=LATENCY_MAX_SECONDS,
        errors=errors,
    )
    clean_tags = _clean_list("tags", tags, errors)
    clean_inputs = _clean_list("input_formats", input_formats, errors)
    clean_outputs = _clean_list("output_formats", output_formats, errors)
    clean_flags = _clean_list("policy_flags", policy_flags, errors)
    unknown = sorted(set(clean_flags) - set(POLICY_FLAGS))
    if unknown:
        errors["policy_flags"] = [
            f"Unknown policy flags: {', '.join(unknown)}. Known: {', '.join(sorted(POLICY_FLAGS))}."
        ]
    vector = None
    if embedding is not None:
        try:
            vector = embeddings.validate_embedding(embedding)
        except embeddings.InvalidEmbedding as error:
            errors["embedding"] = [str(error)]
        if embedding_model != embeddings.embedding_model_id():
            errors["embedding_model"] = [
                f"Vectors must come from {embeddings.embedding_model_id()!r} to be comparable."
            ]
    if errors:
        raise InvalidInput("The capability profile is invalid.", errors)

    # Serialise edits of one agent: the next version number is read under the row lock.
    locked = Agent.objects.select_for_update().get(pk=agent.pk)
    last = locked.profiles.order_by("-version").values_list("version", flat=True).first() or 0
    CapabilityProfile.objects.filter(agent=locked, is_current=True).update(is_current=False)
    profile = CapabilityProfile.objects.create(
        agent=locked,
        version=last + 1,
        is_current=True,
        description=description,
        tags=clean_tags,
        input_formats=clean_inputs,
        output_formats=clean_outputs,
        price_per_task=price_per_task,
        price_per_unit=price_per_unit,
        unit_name=(unit_name or "").strip() if price_per_unit is not None else "",
        expected_latency_seconds=expected_latency_seconds,
        limitations=limitations,
        policy_flags=clean_flags,
        embedding=vector,
        embedding_model=embeddings.embedding_model_id() if vector is not None else "",
        embedded_at=timezone.now() if vector is not None else None,
        created_by=actor,
    )
    if vector is None:
        profile_embed_on_commit(profile_id=profile.pk)
    return profile


def profile_embed_on_commit(*, profile_id: int) -> None:
    queueing.send_on_commit(PROFILE_EMBED_TASK, kwargs={"profile_id": profile_id})


def profiles_embed_missing(*, older_than_seconds: float = 60, limit: int = 500) -> int:
    """Queue the embedding of current profiles still without a vector of the model in use (their
    message was lost to a broker outage, or the model changed); how many were queued. Profiles
    younger than ``older_than_seconds`` are left to the message their commit sent."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    pending = (
        CapabilityProfile.objects.filter(is_current=True, created_at__lt=cutoff)
        .exclude(embedding_model=embeddings.embedding_model_id(), embedding__isnull=False)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(
        queueing.send(PROFILE_EMBED_TASK, kwargs={"profile_id": profile_id})
        for profile_id in pending
    )


def profile_embed(*, profile_id: int) -> bool:
    """Compute and store the profile's vector; True if this call stored it. Idempotent: a profile
    that already has a vector of the model in use is left alone, and the conditional update means
    two workers racing on one profile store it once."""
    profile = CapabilityProfile.objects.filter(pk=profile_id).first()
    if profile is None:
        return False
    model = embeddings.embedding_model_id()
    if profile.embedding is not None and profile.embedding_model == model:
        return False
    vector = embeddings.embed_text(profile.capability_text)
    updated = (
        CapabilityProfile.objects.filter(pk=profile_id)
        .exclude(embedding_model=model)
        .update(embedding=vector, embedding_model=model, embedded_at=timezone.now())
    )
    return updated == 1


def agent_set_status(*, agent: Agent, actor: Participant, status: str, is_staff: bool) -> Agent:
    """Owners pause and resume their agents; only staff suspend or lift a suspension."""
    if status not in Agent.Status.values:
        raise InvalidInput(f"Unknown status {status!r}.", {"status": ["Unknown status."]})
    touches_suspension = Agent.Status.SUSPENDED in (status, agent.status)
    if touches_suspension and not is_staff:
        raise NotAllowed("Only staff can suspend an agent or lift a suspension.")
    if not is_staff and not agent_can_edit(agent=agent, actor=actor):
        raise NotAllowed("Only the agent's owner may pause or resume it.")
    Agent.objects.filter(pk=agent.pk).update(status=status)
    agent.refresh_from_db(fields=["status"])
    return agent


def agent_load_change(*, agent_id: int, delta: int) -> None:
    """Move the agent's count of open tasks (the market calls +1 on award, -1 on finish).

    One UPDATE with F() so concurrent awards do not lose counts; clamped at zero so a duplicated
    "finish" cannot make an agent look emptier than idle.
    """
    Agent.objects.filter(pk=agent_id).update(active_tasks=Greatest(F("active_tasks") + delta, 0))
