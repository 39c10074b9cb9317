"""Celery entry points of the registry: take ids, call one idempotent service."""

from __future__ import annotations

from celery import shared_task

from agents_registry import services_profiles, services_skills
from agents_registry.embeddings import EmbeddingError


@shared_task(
    name=services_profiles.PROFILE_EMBED_TASK,
    # EmbeddingError: the OpenAI-compatible endpoint failed or timed out (transient).
    autoretry_for=(ConnectionError, TimeoutError, EmbeddingError),
    retry_backoff=True,
    max_retries=5,
)
def profile_embed(*, profile_id: int) -> bool:
    return services_profiles.profile_embed(profile_id=profile_id)


@shared_task(
    name=services_skills.SKILL_EMBED_TASK,
    # EmbeddingError: the OpenAI-compatible endpoint failed or timed out (transient).
    autoretry_for=(ConnectionError, TimeoutError, EmbeddingError),
    retry_backoff=True,
    max_retries=5,
)
def skill_version_embed(*, version_id: int) -> bool:
    return services_skills.skill_version_embed(version_id=version_id)


@shared_task(name="agents_registry.embeddings_sweep")
def embeddings_sweep() -> dict[str, int]:
    """Beat: queue again what a lost message left without a vector."""
    return {
        "profiles": services_profiles.profiles_embed_missing(),
        "skill_versions": services_skills.skill_versions_embed_missing(),
    }
