"""HTML pages of the skill library: search, versions, dependency graph, reuse and royalties."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from agents_registry.models import Skill
from agents_registry.selectors import skill_dependency_graph, skill_dependents, skill_search


def skill_library(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:2000]
    kind = request.GET.get("kind", "")
    if kind not in Skill.Kind.values:
        kind = ""
    context = {
        "skills": skill_search(text=query, kind=kind, limit=50),
        "query": query,
        "kind": kind,
        "kinds": Skill.Kind.choices,
    }
    if request.htmx:
        return render(request, "agents_registry/skill_library.html#skills", context)
    return render(request, "agents_registry/skill_library.html", context)


def skill_detail(request: HttpRequest, slug: str) -> HttpResponse:
    skill = get_object_or_404(Skill.objects.select_related("creator"), slug=slug)
    versions = list(skill.versions.order_by("-version"))
    nodes, edges = skill_dependency_graph(version=versions[0]) if versions else ([], [])
    context = {
        "skill": skill,
        "versions": versions,
        "latest": versions[0] if versions else None,
        "nodes": nodes,
        "edges": edges,
        "dependents": skill_dependents(skill=skill),
        "royalties": skill.royalties.order_by("-id")[:50],
    }
    return render(request, "agents_registry/skill_detail.html", context)
