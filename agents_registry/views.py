"""HTML pages of the registry: directory with semantic search, agent profile (versions with
diffs, reputation, outcomes, earnings), register/edit forms, keys, and the match preview partial
that the post-a-task form embeds."""

from __future__ import annotations

import difflib
import secrets
from collections import OrderedDict
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from pgvector.django import CosineDistance

from agents_registry import embeddings, services
from agents_registry.exceptions import InvalidInput, RegistryError
from agents_registry.forms import AgentRegisterForm, ApiKeyForm, PersonalTokenForm, ProfileForm
from agents_registry.htmx import HtmxHttpRequest
from agents_registry.http import AuthenticatedHttpRequest
from agents_registry.learning import learning_report
from agents_registry.models import Agent, ApiKey, CapabilityProfile
from agents_registry.services import participant_for_user
from ledger import selectors as ledger_selectors
from workers.services import hosted_bids

DIRECTORY_LIMIT = 50
EARNINGS_DAYS = 30


def _form_errors_from(form: ProfileForm, error: RegistryError) -> None:
    fields = getattr(error, "fields", {})
    for name, errors in fields.items():
        for message in errors:
            form.add_error(name if name in form.fields else None, message)
    if not fields:
        form.add_error(None, str(error))


def agent_directory(request: HtmxHttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:2000]
    profiles = (
        CapabilityProfile.objects.filter(is_current=True).select_related("agent").defer("embedding")
    )
    profiles = profiles.exclude(agent__status=Agent.Status.SUSPENDED)
    rows: list[dict[str, Any]]
    if query:
        vector = embeddings.embed_text(query)
        nearest = (
            profiles.filter(embedding_model=embeddings.embedding_model_id())
            .exclude(embedding=None)
            .annotate(distance=CosineDistance("embedding", vector))
            .order_by("distance")
        )
        rows = [
            {"agent": profile.agent, "profile": profile, "similarity": 1 - profile.distance}
            for profile in nearest[:DIRECTORY_LIMIT]
        ]
    else:
        rows = [
            {"agent": profile.agent, "profile": profile, "similarity": None}
            for profile in profiles.order_by("agent__name")[:DIRECTORY_LIMIT]
        ]
    context = {"rows": rows, "query": query}
    if request.htmx:
        return render(request, "agents_registry/directory.html#results", context)
    return render(request, "agents_registry/directory.html", context)


def _version_diffs(profiles: list[CapabilityProfile]) -> list[dict]:
    """Each version with what changed from the one before it."""
    fields = [
        ("price_per_task", "price per task"),
        ("price_per_unit", "price per unit"),
        ("unit_name", "unit"),
        ("expected_latency_seconds", "expected latency (s)"),
        ("tags", "tags"),
        ("input_formats", "input formats"),
        ("output_formats", "output formats"),
        ("policy_flags", "policy flags"),
        ("limitations", "limitations"),
    ]
    ordered = sorted(profiles, key=lambda profile: profile.version)
    history = []
    previous = None
    for profile in ordered:
        changes: list[dict[str, Any]] = []
        diff_lines: list[str] = []
        if previous is not None:
            for field, label in fields:
                before, after = getattr(previous, field), getattr(profile, field)
                if before != after:
                    changes.append({"label": label, "before": before, "after": after})
            diff_lines = list(
                difflib.unified_diff(
                    previous.description.split(". "),
                    profile.description.split(". "),
                    lineterm="",
                    n=0,
                )
            )[2:]
        history.append({"profile": profile, "changes": changes, "description_diff": diff_lines})
        previous = profile
    return list(reversed(history))


EARNING_REASONS = ("escrow_settle", "escrow_split")


def _earnings(agent: Agent) -> list[dict]:
    """Credits paid into the agent's wallet by settlements, per day over the last 30 days, read
    from the ledger's statement (the authority on money), for the chart."""
    since = (timezone.now() - timedelta(days=EARNINGS_DAYS - 1)).date()
    page = ledger_selectors.statement_for(owner_ref=agent.participant.ledger_ref, limit=200)
    totals: dict = {}
    for line in page.lines:
        day = timezone.localdate(line.created_at)
        if day >= since and line.amount > 0 and line.reason in EARNING_REASONS:
            totals[day] = totals.get(day, 0) + line.amount
    days: OrderedDict = OrderedDict(
        (since + timedelta(days=offset), 0) for offset in range(EARNINGS_DAYS)
    )
    for day, total in totals.items():
        days[day] = total
    peak = max(days.values()) or 1
    bars = []
    for index, (day, total) in enumerate(days.items()):
        height = round(100 * total / peak)
        bars.append(
            {"day": day, "total": total, "height": height, "x": index * 10, "y": 100 - height}
        )
    return bars


def agent_detail(request: HttpRequest, slug: str) -> HttpResponse:
    agent = get_object_or_404(Agent.objects.select_related("owner"), slug=slug)
    profiles = list(agent.profiles.all())
    current = next((profile for profile in profiles if profile.is_current), None)
    can_edit = request.user.is_authenticated and services.agent_can_edit(
        agent=agent, actor=participant_for_user(user=request.user)
    )
    earnings = _earnings(agent)
    wallet = ledger_selectors.balance_for(owner_ref=agent.participant.ledger_ref)
    context = {
        "wallet": wallet,
        "agent": agent,
        "current": current,
        "history": _version_diffs(profiles),
        "outcomes": agent.outcomes.select_related("profile")[:50],
        "earnings": earnings,
        "earnings_total": sum(day["total"] for day in earnings),
        "can_edit": can_edit,
    }
    return render(request, "agents_registry/agent_detail.html", context)


@login_required
def matching_learning(request: AuthenticatedHttpRequest, slug: str | None = None) -> HttpResponse:
    """How the market's choices learn (staff: the whole market), or how one agent's estimates
    fare (its owner or staff): calibration, cost per accepted result and regret over time."""
    agent = None
    if slug is not None:
        agent = get_object_or_404(Agent, slug=slug)
        if not (
            request.user.is_staff
            or services.agent_can_edit(agent=agent, actor=participant_for_user(user=request.user))
        ):
            raise PermissionDenied("Only the agent's owner and staff see its learning report.")
    elif not request.user.is_staff:
        raise PermissionDenied("The market's learning report is for staff.")
    report = learning_report(agent_id=agent.pk if agent else None)
    return render(request, "agents_registry/learning.html", {"agent": agent, "report": report})


def profile_status(request: HttpRequest, slug: str) -> HttpResponse:
    """The "is it matchable yet?" badge; htmx polls it while the worker embeds the profile."""
    agent = get_object_or_404(Agent, slug=slug)
    current = agent.profiles.filter(is_current=True).first()
    return render(
        request,
        "agents_registry/agent_detail.html#profile_status",
        {"agent": agent, "current": current},
    )


@login_required
def agent_register_page(request: AuthenticatedHttpRequest) -> HttpResponse:
    owner = participant_for_user(user=request.user)
    form = AgentRegisterForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                agent = services.agent_register(
                    owner=owner,
                    name=form.cleaned_data["name"],
                    runtime=form.cleaned_data["runtime"],
                    concurrency_limit=form.cleaned_data["concurrency_limit"],
                )
                services.profile_create(agent=agent, actor=owner, **form.profile_kwargs())
        except InvalidInput as error:
            _form_errors_from(form, error)
        else:
            messages.success(request, f"{agent.name} is registered. Issue it an API key below.")
            return redirect("agent-keys", slug=agent.slug)
    return render(request, "agents_registry/agent_form.html", {"form": form, "agent": None})


def _editable(request: AuthenticatedHttpRequest, slug: str) -> Agent:
    agent = get_object_or_404(Agent, slug=slug)
    if not services.agent_can_edit(agent=agent, actor=participant_for_user(user=request.user)):
        raise PermissionDenied("Only the agent's owner may do this.")
    return agent


@login_required
def agent_edit(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    agent = _editable(request, slug)
    current = agent.profiles.filter(is_current=True).first()
    initial = {}
    if current:
        initial = {
            "description": current.description,
            "tags": ", ".join(current.tags),
            "input_formats": ", ".join(current.input_formats),
            "output_formats": ", ".join(current.output_formats),
            "price_per_task": current.price_per_task,
            "price_per_unit": current.price_per_unit,
            "unit_name": current.unit_name,
            "expected_latency_seconds": current.expected_latency_seconds,
            "limitations": current.limitations,
            "policy_flags": current.policy_flags,
        }
    form = ProfileForm(request.POST or None, initial=initial)
    if request.method == "POST":
        if "status" in request.POST:
            try:
                services.agent_set_status(
                    agent=agent,
                    actor=participant_for_user(user=request.user),
                    status=request.POST["status"],
                    is_staff=request.user.is_staff,
                )
            except RegistryError as error:
                messages.error(request, str(error))
            return redirect("agent-detail", slug=agent.slug)
        if form.is_valid():
            try:
                profile = services.profile_create(
                    agent=agent,
                    actor=participant_for_user(user=request.user),
                    **form.profile_kwargs(),
                )
            except InvalidInput as error:
                _form_errors_from(form, error)
            else:
                messages.success(request, f"Saved as version {profile.version}.")
                return redirect("agent-detail", slug=agent.slug)
    return render(request, "agents_registry/agent_form.html", {"form": form, "agent": agent})


@login_required
def agent_keys(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    agent = _editable(request, slug)
    form = ApiKeyForm(request.POST or None, initial={"scopes": services.DEFAULT_AGENT_SCOPES})
    issued_secret = None
    if request.method == "POST":
        if "revoke" in request.POST:
            api_key = get_object_or_404(
                ApiKey, participant=agent.participant, prefix=request.POST["revoke"]
            )
            services.api_key_revoke(api_key=api_key)
            messages.success(request, f"Key {api_key.prefix} is revoked.")
            return redirect("agent-keys", slug=agent.slug)
        if form.is_valid():
            _, issued_secret = services.api_key_issue(
                participant=agent.participant,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
            )
            form = ApiKeyForm(initial={"scopes": services.DEFAULT_AGENT_SCOPES})
    keys = ApiKey.objects.filter(participant=agent.participant).order_by("-created")
    context = {"agent": agent, "form": form, "keys": keys, "issued_secret": issued_secret}
    response = render(request, "agents_registry/agent_keys.html", context)
    response["Cache-Control"] = "no-store"  # the page may hold a secret shown once
    return response


def match_preview(request: HtmxHttpRequest) -> HttpResponse:
    """Top matches for the task being typed, with factors, estimated cost and which hosted
    agents would bid on it automatically (the rule the bidding uses). The page draws a seed
    once and its form sends it back, so the exploration draw stays fixed while typing."""
    text = request.GET.get("text", "").strip()[:20_000]
    error = ""
    result = None
    rows: list = []
    try:
        budget = int(request.GET.get("budget") or 0)
    except ValueError:
        budget, error = 0, "The budget must be a whole number of credits."
    if not error and budget < 0:
        error = "The budget cannot be negative."
    try:
        seed = int(request.GET["seed"]) & 0xFFFFFFFF
    except (KeyError, ValueError):
        seed = secrets.randbits(32)
    if not error and len(text) >= 10:
        # A person previews: no own agent to leave out, as the bidding would for an agent poster.
        result = hosted_bids.hosted_match(poster=None, text=text, budget=budget, seed=seed)
        rows = list(
            zip(result.candidates, hosted_bids.auto_bid_verdicts(result.candidates), strict=True)
        )
    context = {
        "text": text,
        "budget": budget,
        "seed": seed,
        "result": result,
        "rows": rows,
        "error": error,
        **hosted_bids.preview_context(result),
    }
    if request.htmx:
        return render(request, "agents_registry/match_preview.html#preview", context)
    return render(request, "agents_registry/match_preview.html", context)


@login_required
def personal_tokens(request: AuthenticatedHttpRequest) -> HttpResponse:
    """A person's API tokens: issue one (its secret shown once) or revoke one."""
    participant = participant_for_user(user=request.user)
    form = PersonalTokenForm(
        request.POST or None, initial={"scopes": services.DEFAULT_PERSONAL_SCOPES}
    )
    issued_secret = None
    if request.method == "POST":
        if "revoke" in request.POST:
            api_key = get_object_or_404(
                ApiKey, participant=participant, prefix=request.POST["revoke"]
            )
            services.api_key_revoke(api_key=api_key)
            messages.success(request, f"Token {api_key.prefix} is revoked.")
            return redirect("personal-tokens")
        if form.is_valid():
            days = form.cleaned_data["expires_in_days"]
            _, issued_secret = services.personal_token_issue(
                participant=participant,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                expires_at=timezone.now() + timedelta(days=days) if days else None,
            )
            form = PersonalTokenForm(initial={"scopes": services.DEFAULT_PERSONAL_SCOPES})
    tokens = ApiKey.objects.filter(participant=participant).order_by("-created")
    context = {"form": form, "tokens": tokens, "issued_secret": issued_secret}
    response = render(request, "agents_registry/personal_tokens.html", context)
    response["Cache-Control"] = "no-store"  # the page may hold a secret shown once
    return response
