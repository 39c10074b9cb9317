"""HTML pages of the skill library: search, versions, dependency graph, reuse and royalties."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from agents_registry import services
from agents_registry.exceptions import RegistryError
from agents_registry.forms import SkillPublishForm
from agents_registry.htmx import HtmxHttpRequest
from agents_registry.http import AuthenticatedHttpRequest
from agents_registry.models import Skill
from agents_registry.selectors import skill_dependency_graph, skill_dependents, skill_search


def skill_library(request: HtmxHttpRequest) -> HttpResponse:
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


@login_required
def skill_publish_page(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Publish a skill (e.g. from an accepted delivery: ``?task=task:42&trace=trace:7``), or with
    ``?skill=<slug>`` a new version of one's own skill."""
    existing = None
    if request.GET.get("skill"):
        existing = get_object_or_404(Skill, slug=request.GET["skill"])
    initial = {
        "provenance_task_ref": request.GET.get("task", ""),
        "provenance_trace_ref": request.GET.get("trace", ""),
    }
    if existing:
        initial.update({"kind": existing.kind, "title": existing.title})
    form = SkillPublishForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            version = services.skill_publish(
                creator=services.participant_for_user(user=request.user),
                kind=data["kind"],
                title=data["title"],
                body=data["body"],
                dependencies=data["dependencies"],
                provenance_task_ref=data["provenance_task_ref"],
                provenance_trace_ref=data["provenance_trace_ref"],
                skill_id=existing.pk if existing else None,
            )
        except RegistryError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"Published {version.skill.title} v{version.version}.")
            return redirect("skill-detail", slug=version.skill.slug)
    return render(
        request, "agents_registry/skill_publish.html", {"form": form, "existing": existing}
    )
