"""Reads of skills: semantic search and the dependency graph (re-exported by ``selectors``)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Max, QuerySet
from pgvector.django import CosineDistance

from agents_registry import embeddings
from agents_registry.models import Skill, SkillDependency, SkillVersion


def skill_search(*, text: str = "", kind: str = "", limit: int = 30) -> list[Skill]:
    """Skills by meaning of ``text`` (nearest latest version), or newest first without text."""
    skills: QuerySet[Skill] = Skill.objects.select_related("creator")
    if kind:
        skills = skills.filter(kind=kind)
    if not text.strip():
        return list(skills.order_by("-created_at", "-id")[:limit])
    vector = embeddings.embed_text(text)
    latest_ids = (
        SkillVersion.objects.filter(skill__in=skills)
        .values("skill_id")
        .annotate(latest=Max("id"))
        .values_list("latest", flat=True)
    )
    nearest = (
        SkillVersion.objects.filter(
            pk__in=list(latest_ids), embedding_model=embeddings.embedding_model_id()
        )
        .exclude(embedding=None)
        .annotate(distance=CosineDistance("embedding", vector))
        .order_by("distance")
        .select_related("skill__creator")[:limit]
    )
    return [version.skill for version in nearest]


@dataclass
class GraphEdge:
    source: SkillVersion
    target: SkillVersion
    share_basis_points: int


def skill_dependency_graph(*, version: SkillVersion) -> tuple[list[SkillVersion], list[GraphEdge]]:
    """Every version reachable from ``version`` through pinned dependencies, and the edges."""
    nodes = {version.pk: version}
    edges: list[GraphEdge] = []
    frontier = [version.pk]
    while frontier:
        dependencies = SkillDependency.objects.filter(version_id__in=frontier).select_related(
            "depends_on__skill__creator", "version"
        )
        frontier = []
        for dependency in dependencies:
            target = dependency.depends_on
            edges.append(
                GraphEdge(
                    source=nodes.get(dependency.version_id, dependency.version),
                    target=target,
                    share_basis_points=dependency.share_basis_points,
                )
            )
            if target.pk not in nodes:
                nodes[target.pk] = target
                frontier.append(target.pk)
    return list(nodes.values()), edges


def skill_dependents(*, skill: Skill) -> list[Skill]:
    """Skills that build on this one (through any of their versions)."""
    return list(
        Skill.objects.filter(versions__dependencies__depends_on__skill=skill)
        .distinct()
        .order_by("title")
    )


def skill_versions_unknown(*, version_ids: list[int]) -> list[int]:
    """The ids among ``version_ids`` that name no skill version (sorted)."""
    known = set(SkillVersion.objects.filter(pk__in=version_ids).values_list("pk", flat=True))
    return sorted(set(version_ids) - known)
