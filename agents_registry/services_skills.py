"""Writes of skills: publishing versions, the declared royalty split, reuse and royalties earned
(re-exported by ``services``).

The royalty split: the payout's royalty share is divided equally between the skill versions a
delivery used; each version passes ``share_basis_points`` of its part to each pinned dependency
(recursively) and its creator keeps the rest. Exact fractions are computed first and turned into
whole basis points by the largest-remainder method, so the parts always sum exactly to the total.
The ledger's settlement plan caps the total.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from datetime import timedelta
from fractions import Fraction
from typing import TypeVar

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify

from agents_registry import embeddings, queueing
from agents_registry.exceptions import InvalidInput, NotAllowed, SkillCycle
from agents_registry.models import (
    Participant,
    Skill,
    SkillDependency,
    SkillRoyalty,
    SkillUsage,
    SkillVersion,
)

SKILL_EMBED_TASK = "agents_registry.skill_version_embed"
TITLE_MAX_CHARS = 160
BODY_MAX_CHARS = 20_000
WORKFLOW_MAX_STEPS = 50
FULL_SHARE = 10_000


def _workflow_errors(body: dict) -> list[str]:
    steps = body.get("steps")
    if not isinstance(steps, list) or not steps:
        return ["A workflow body needs a non-empty list of steps."]
    if len(steps) > WORKFLOW_MAX_STEPS:
        return [f"At most {WORKFLOW_MAX_STEPS} steps."]
    ids: list[str] = []
    for step in steps:
        if not isinstance(step, dict) or not isinstance(step.get("id"), str) or not step["id"]:
            return ["Each step needs a string id."]
        if not isinstance(step.get("action"), str) or not step["action"].strip():
            return [f"Step {step['id']!r} needs an action."]
        ids.append(step["id"])
    if len(set(ids)) != len(ids):
        return ["Step ids must be unique."]
    after = {step["id"]: step.get("after", []) for step in steps}
    for step_id, previous in after.items():
        if not isinstance(previous, list) or any(p not in after for p in previous):
            return [f"Step {step_id!r} waits for an unknown step."]
    # Kahn's algorithm: a workflow must be a DAG.
    waiting = {step_id: set(previous) for step_id, previous in after.items()}
    ready = [step_id for step_id, previous in waiting.items() if not previous]
    done = 0
    while ready:
        current = ready.pop()
        done += 1
        for step_id, previous in waiting.items():
            if current in previous:
                previous.discard(current)
                if not previous:
                    ready.append(step_id)
    if done != len(steps):
        return ["The workflow's steps form a cycle."]
    return []


def _summary(title: str, body: dict) -> str:
    if "text" in body:
        return f"{title}. {body['text']}"[:4000]
    actions = "; ".join(step["action"] for step in body.get("steps", []))
    return f"{title}. {body.get('description', '')} Steps: {actions}"[:4000]


def _unique_skill_slug(title: str) -> str:
    base = slugify(title)[:60] or "skill"
    slug, counter = base, 1
    while Skill.objects.filter(slug=slug).exists():
        counter += 1
        slug = f"{base}-{counter}"
    return slug


def _skill_reaches(*, start_skill_ids: Sequence[int], target_skill_id: int) -> bool:
    """Does any skill in ``start_skill_ids`` depend, through any version, on the target?"""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH RECURSIVE reach(skill_id) AS (
                SELECT unnest(%s::bigint[])
                UNION
                SELECT target.skill_id
                FROM reach
                JOIN agents_registry_skillversion source ON source.skill_id = reach.skill_id
                JOIN agents_registry_skilldependency d ON d.version_id = source.id
                JOIN agents_registry_skillversion target ON target.id = d.depends_on_id
            )
            SELECT EXISTS (SELECT 1 FROM reach WHERE skill_id = %s)
            """,
            [list(start_skill_ids), target_skill_id],
        )
        return bool(cursor.fetchone()[0])


@transaction.atomic
def skill_publish(
    *,
    creator: Participant,
    kind: str,
    title: str,
    body: str | dict,
    dependencies: Sequence[tuple[int, int]] = (),
    provenance_task_ref: str = "",
    provenance_trace_ref: str = "",
    skill_id: int | None = None,
) -> SkillVersion:
    """Publish a new skill, or (with ``skill_id``) a new version of one of the creator's skills.

    ``dependencies`` are (skill id, royalty share in basis points); each is pinned to that skill's
    latest version. Cycles between skills are refused.
    """
    errors: dict[str, list[str]] = {}
    if kind not in Skill.Kind.values:
        errors["kind"] = [f"One of: {', '.join(Skill.Kind.values)}."]
    title = (title or "").strip() if isinstance(title, str) else ""
    if not 3 <= len(title) <= TITLE_MAX_CHARS:
        errors["title"] = [f"Between 3 and {TITLE_MAX_CHARS} characters."]
    if isinstance(body, str):
        body = {"text": body.strip()}
        if not body["text"]:
            errors["body"] = ["The skill's body is empty."]
    elif isinstance(body, dict):
        if kind == Skill.Kind.WORKFLOW:
            workflow_errors = _workflow_errors(body)
            if workflow_errors:
                errors["body"] = workflow_errors
        elif not isinstance(body.get("text"), str) or not body["text"].strip():
            errors["body"] = ["A prompt, tool or experience body needs a non-empty 'text'."]
    else:
        errors["body"] = ["The body must be text or a JSON object."]
    if not errors.get("body") and len(json.dumps(body)) > BODY_MAX_CHARS:
        errors["body"] = [f"The body must be at most {BODY_MAX_CHARS} characters."]

    shares: dict[int, int] = {}
    for item in dependencies:
        try:
            dependency_id, share = int(item[0]), item[1]
        except (TypeError, ValueError, IndexError):
            errors["dependencies"] = ["Each dependency is (skill id, share in basis points)."]
            break
        if isinstance(share, bool) or not isinstance(share, int) or not 0 <= share <= FULL_SHARE:
            errors["dependencies"] = ["Each share is a whole number of basis points, 0 to 10000."]
            break
        if dependency_id in shares:
            errors["dependencies"] = [f"Skill {dependency_id} is listed twice."]
            break
        shares[dependency_id] = share
    if not errors.get("dependencies") and sum(shares.values()) > FULL_SHARE:
        errors["dependencies"] = ["The dependencies' shares add up to more than 100%."]
    if skill_id is not None and skill_id in shares:
        errors["dependencies"] = ["A skill cannot depend on itself."]
    if errors:
        raise InvalidInput("The skill is invalid.", errors)

    latest: dict[int, SkillVersion] = {}
    for version in SkillVersion.objects.filter(skill_id__in=shares).order_by("skill_id", "version"):
        latest[version.skill_id] = version
    missing = sorted(set(shares) - set(latest))
    if missing:
        raise InvalidInput(
            "Unknown dependencies.", {"dependencies": [f"No such skill: {missing}."]}
        )

    if skill_id is None:
        skill = Skill.objects.create(
            creator=creator, kind=kind, title=title, slug=_unique_skill_slug(title)
        )
        number = 1
    else:
        # The lock serialises new versions of one skill (and the cycle check against them).
        locked = Skill.objects.select_for_update().filter(pk=skill_id).first()
        if locked is None:
            raise InvalidInput(f"No such skill: {skill_id}.")
        skill = locked
        if skill.creator_id != creator.pk:
            raise NotAllowed("Only the skill's creator may publish new versions of it.")
        if kind != skill.kind:
            raise InvalidInput("A new version keeps the skill's kind.", {"kind": ["Unchanged."]})
        if shares and _skill_reaches(start_skill_ids=list(shares), target_skill_id=skill.pk):
            raise SkillCycle(
                "These dependencies would make a cycle: one of them already depends on this skill."
            )
        newest = skill.versions.order_by("-version").values_list("version", flat=True).first()
        assert newest is not None  # a skill is created with its first version
        number = newest + 1
        if title != skill.title:
            Skill.objects.filter(pk=skill.pk).update(title=title)
    version = SkillVersion.objects.create(
        skill=skill,
        version=number,
        body=body,
        summary=_summary(title, body),
        provenance_task_ref=provenance_task_ref[:80],
        provenance_trace_ref=provenance_trace_ref[:80],
    )
    SkillDependency.objects.bulk_create(
        SkillDependency(version=version, depends_on=latest[dependency_id], share_basis_points=share)
        for dependency_id, share in shares.items()
    )
    queueing.send_on_commit(SKILL_EMBED_TASK, kwargs={"version_id": version.pk})
    return version


def skill_version_embed(*, version_id: int) -> bool:
    """Store the version's vector once (idempotent, conditional update)."""
    version = SkillVersion.objects.filter(pk=version_id).first()
    model = embeddings.embedding_model_id()
    if version is None or (version.embedding is not None and version.embedding_model == model):
        return False
    vector = embeddings.embed_text(version.summary)
    return (
        SkillVersion.objects.filter(pk=version_id)
        .exclude(embedding_model=model)
        .update(embedding=vector, embedding_model=model)
        == 1
    )


def skill_versions_embed_missing(*, older_than_seconds: float = 60, limit: int = 500) -> int:
    """Queue the embedding of versions still without a vector of the model in use (see
    ``services_profiles.profiles_embed_missing``); how many were queued."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    pending = (
        SkillVersion.objects.filter(created_at__lt=cutoff)
        .exclude(embedding_model=embeddings.embedding_model_id(), embedding__isnull=False)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(
        queueing.send(SKILL_EMBED_TASK, kwargs={"version_id": version_id}) for version_id in pending
    )


def _royalty_fractions(skill_version_ids: Sequence[int]) -> dict[tuple[int, str], Fraction]:
    """Exact share of the royalty pool per (skill id, owner ref); the values sum to 1."""
    used = list(dict.fromkeys(int(pk) for pk in skill_version_ids))
    versions: dict[int, SkillVersion] = {}
    edges: dict[int, list[tuple[int, int]]] = defaultdict(list)
    frontier = set(used)
    while frontier:  # load the pinned dependency closure, one query per level
        loaded = SkillVersion.objects.select_related("skill").in_bulk(frontier - set(versions))
        missing = frontier - set(versions) - set(loaded)
        if missing:
            raise InvalidInput(f"Unknown skill versions: {sorted(missing)}.")
        versions.update(loaded)
        next_frontier = set()
        for dependency in SkillDependency.objects.filter(version_id__in=loaded):
            edges[dependency.version_id].append(
                (dependency.depends_on_id, dependency.share_basis_points)
            )
            if dependency.depends_on_id not in versions:
                next_frontier.add(dependency.depends_on_id)
        frontier = next_frontier

    fractions: dict[tuple[int, str], Fraction] = defaultdict(Fraction)

    def distribute(version_id: int, portion: Fraction) -> None:
        # Pinned dependencies always point to older versions, so this recursion ends.
        passed = Fraction(0)
        for dependency_id, share in edges[version_id]:
            part = portion * share / FULL_SHARE
            if part:
                distribute(dependency_id, part)
                passed += part
        version = versions[version_id]
        kept = portion - passed
        if kept:
            fractions[(version.skill_id, f"participant:{version.skill.creator_id}")] += kept

    for version_id in used:
        distribute(version_id, Fraction(1, len(used)))
    return dict(fractions)


_Key = TypeVar("_Key", bound=Hashable)


def _apportion(weights: Mapping[_Key, Fraction], total: int) -> dict[_Key, int]:
    """Whole numbers proportional to ``weights`` summing exactly to ``total`` (largest
    remainder; ties go to the smaller key, so the result is deterministic)."""
    weight_sum = sum(weights.values())
    if not weights or total <= 0 or weight_sum <= 0:
        return dict.fromkeys(weights, 0)
    exact = {key: Fraction(total) * weight / weight_sum for key, weight in weights.items()}
    floors = {key: int(value) for key, value in exact.items()}
    left = total - sum(floors.values())
    by_remainder = sorted(exact, key=lambda key: (-(exact[key] - floors[key]), str(key)))
    for key in by_remainder[:left]:
        floors[key] += 1
    return floors


def skill_royalty_shares(
    *, skill_version_ids: Sequence[int], total_basis_points: int
) -> list[tuple[str, int]]:
    """The declared split as (owner ref, basis points of the payout), summing exactly to
    ``total_basis_points``; largest first. The ledger's settlement plan caps the total."""
    if not skill_version_ids or total_basis_points <= 0:
        return []
    per_owner: dict[str, Fraction] = defaultdict(Fraction)
    for (_, owner_ref), fraction in _royalty_fractions(skill_version_ids).items():
        per_owner[owner_ref] += fraction
    points = _apportion(per_owner, total_basis_points)
    return sorted(
        ((owner, value) for owner, value in points.items() if value > 0),
        key=lambda item: (-item[1], item[0]),
    )


@transaction.atomic
def skill_usage_record(
    *, skill_version_ids: Sequence[int], task_ref: str, royalties: Mapping[str, int]
) -> None:
    """After settlement: count each used skill's reuse and attribute the royalties paid (owner
    ref -> credits) to the skills that earned them. Idempotent per task: the unique usage rows
    decide, so a replay changes nothing."""
    if not task_ref:
        raise InvalidInput("task_ref is required.")
    for owner_ref, amount in royalties.items():
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise InvalidInput(f"The royalty of {owner_ref} must be a non-negative whole number.")
    used = list(dict.fromkeys(int(pk) for pk in skill_version_ids))
    if not used:
        return
    fractions = _royalty_fractions(used)
    owners = {owner for _, owner in fractions}
    unknown = sorted(set(royalties) - owners)
    if unknown:
        raise InvalidInput(f"Royalties name owners of no used skill: {', '.join(unknown)}.")
    try:
        with transaction.atomic():
            SkillUsage.objects.bulk_create(
                SkillUsage(version_id=version_id, task_ref=task_ref) for version_id in used
            )
    except IntegrityError:
        return  # already recorded for this task
    used_skills = SkillVersion.objects.filter(pk__in=used).values_list("skill_id", flat=True)
    for skill_id in sorted(set(used_skills)):
        Skill.objects.filter(pk=skill_id).update(reuse_count=F("reuse_count") + 1)
    for owner_ref, amount in sorted(royalties.items()):
        weights = {
            skill_id: fraction
            for (skill_id, owner), fraction in fractions.items()
            if owner == owner_ref
        }
        for skill_id, part in sorted(_apportion(weights, amount).items()):
            if part <= 0:
                continue
            SkillRoyalty.objects.create(
                skill_id=skill_id, task_ref=task_ref, owner_ref=owner_ref, amount=part
            )
            Skill.objects.filter(pk=skill_id).update(royalties_earned=F("royalties_earned") + part)
