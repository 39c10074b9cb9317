"""HTML pages of the market: the feed, posting (with a live match preview), the task page with
its review actions, and the dashboard. Pages work without JavaScript; htmx swaps the named
partials of the same templates, and a websocket hint tells the task page to refetch."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.text import capfirst
from django.views.decorators.http import require_POST

from agents_registry.htmx import HtmxHttpRequest
from agents_registry.models import Participant
from core.transactions import consistent_reads
from ledger import selectors as ledger_selectors
from marketplace import actions, selectors, services
from marketplace.api.deliveries import delivery_file_response
from marketplace.exceptions import MarketError, NotFound
from marketplace.models import Bid, Delivery, Task
from marketplace.sanitize import sanitize_text
from marketplace.services.tasks import task_embedding_text
from workers.services import hosted_bids


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def home(request: HtmxHttpRequest) -> HttpResponse:
    viewer = selectors.viewer_for_request(request)
    search = request.GET.get("q", "").strip()
    min_bounty, max_bounty = _int(request.GET.get("min")), _int(request.GET.get("max"))
    tasks = selectors.tasks_feed(
        viewer=viewer, search=search, min_bounty=min_bounty, max_bounty=max_bounty
    )
    page = Paginator(tasks, 20).get_page(request.GET.get("page"))
    context = {"page": page, "q": search, "min": min_bounty or "", "max": max_bounty or ""}
    template = "marketplace/home.html#feed" if request.htmx else "marketplace/home.html"
    return render(request, template, context)


def _available(participant: Participant) -> int:
    return ledger_selectors.balance_for(owner_ref=participant.ledger_ref).available


@login_required
def task_new(request: HttpRequest) -> HttpResponse:
    _, participant = selectors.viewer_signed_in(request)
    values = request.POST if request.method == "POST" else {}
    errors = ""
    if request.method == "POST":
        deadline = None
        if values.get("deadline"):
            try:
                deadline = timezone.make_aware(datetime.fromisoformat(values["deadline"]))
            except ValueError:
                errors = "The deadline must be a date and time."
        if not errors:
            try:
                task = services.task_post(
                    poster=participant,
                    title=values.get("title", ""),
                    description=values.get("description", ""),
                    acceptance_criteria=values.get("acceptance_criteria", ""),
                    checks=_checks_from_form(values),
                    bounty=_int(values.get("bounty")) or 0,
                    deadline=deadline,
                    visibility=values.get("visibility", "public"),
                    idempotency_key=values.get("form_key") or None,
                    draft="save_draft" in values,
                )
            except MarketError as error:
                errors = capfirst(str(error))
            else:
                if task.state == task.State.DRAFT:
                    messages.success(
                        request, "Saved as a draft: only you see it until you publish."
                    )
                else:
                    messages.success(request, f"Posted. {task.bounty} credits are held in escrow.")
                return redirect("task-detail", task_id=task.pk)
    context = {
        "values": values,
        "errors": errors,
        "available": _available(participant),
        "form_key": timezone.now().strftime("%s%f"),
    }
    return render(request, "marketplace/task_new.html", context, status=400 if errors else 200)


def _checks_from_form(values: Mapping[str, str]) -> dict:
    checks: dict = {}
    if values.get("check_regex"):
        checks["regex"] = values["check_regex"]
    fields = [name.strip() for name in values.get("check_fields", "").split(",") if name.strip()]
    if fields:
        checks["required_fields"] = fields
    return checks


def _deadline(value: str | None) -> datetime | None:
    try:
        return timezone.make_aware(datetime.fromisoformat(value)) if value else None
    except ValueError:
        return None


@login_required
def task_preview(request: HttpRequest) -> HttpResponse:
    """The live match preview as the poster types: matched agents, their prices and factors,
    which hosted agents will bid on posting (the rule and the ranking the bidding uses, with the
    exploration draw seeded by the draft's form key), and whether the wallet covers the bounty."""
    _, participant = selectors.viewer_signed_in(request)
    values = request.GET
    text = task_embedding_text(
        title=values.get("title", ""),
        description=values.get("description", ""),
        acceptance_criteria=values.get("acceptance_criteria", ""),
    )
    bounty = _int(values.get("bounty")) or 0
    private = values.get("visibility") == "private"
    rows: list = []
    result = None
    if len(text) >= 8 and bounty > 0:
        result = hosted_bids.hosted_match(
            poster=participant,
            text=text,
            budget=bounty,
            deadline=_deadline(values.get("deadline")),
            seed=hosted_bids.auto_bid_seed(poster_id=participant.pk, key=values.get("form_key")),
        )
        verdicts = hosted_bids.auto_bid_verdicts(result.candidates)
        if private:  # hosted agents bid only on public tasks
            verdicts = [
                hosted_bids.AutoBid(False, "Private task: no automatic bids.") for _ in verdicts
            ]
        rows = list(zip(result.candidates, verdicts, strict=True))
    context = {
        "rows": rows,
        "result": result,
        "bounty": bounty,
        "available": _available(participant),
        "text": text,
        "private": private,
        "lowest_price": min((candidate.price for candidate, _ in rows), default=None),
        **hosted_bids.preview_context(result),
    }
    return render(request, "marketplace/task_new.html#preview", context)


def _task_context(request: HttpRequest, task_id: int) -> dict:
    viewer = selectors.viewer_for_request(request)
    task = selectors.access_task(viewer=viewer, task_id=task_id)
    participant = viewer.participant
    deliveries = list(selectors.deliveries_for_task(viewer=viewer, task=task))
    for delivery in deliveries:
        delivery.safe_html = sanitize_text(delivery.text)  # type: ignore[attr-defined]  # for the page
    # The buttons and forms come from the same table as the API's answer of what is allowed.
    allowed = actions.task_actions(viewer=viewer, task=task)
    return {
        "task": task,
        "bids": list(selectors.bids_for_task(viewer=viewer, task=task)),
        "bid_count": Bid.objects.filter(task=task, status=Bid.Status.ACTIVE).count(),
        "deliveries": deliveries,
        "children": list(selectors.task_children(task=task)),
        "events": selectors.task_timeline(viewer=viewer, task=task),
        "dispute": selectors.access_dispute(viewer=viewer, task=task),
        "is_poster": participant is not None and participant.pk == task.poster_id,
        "is_assignee": participant is not None and participant.pk == task.assignee_id,
        "actions": allowed,
        "stalls_at": actions.work_stalls_at(task),
        "escrow": ledger_selectors.escrow_balance(task_ref=task.ledger_ref)
        if selectors.is_task_party(viewer, task)
        else None,
    }


def task_detail(request: HtmxHttpRequest, task_id: int) -> HttpResponse:
    # One snapshot for the whole page: a delivery committed between two of its reads would show
    # without its review forms (the task, read first, still in progress).
    with consistent_reads():
        try:
            context = _task_context(request, task_id)
        except MarketError:
            return render(request, "marketplace/not_found.html", status=404)
        template = "marketplace/task.html#live" if request.htmx else "marketplace/task.html"
        return render(request, template, context)


@login_required
@require_POST
def task_act(request: HttpRequest, task_id: int, action: str) -> HttpResponseBase:
    """Every button of the task page posts here; the service decides whether it is allowed."""
    viewer, actor = selectors.viewer_signed_in(request)
    data = request.POST

    def delivery() -> Delivery:
        return selectors.access_delivery(viewer=viewer, delivery_id=_int(data.get("delivery")) or 0)

    try:
        task = selectors.access_task(viewer=viewer, task_id=task_id)
        if action == "bid":
            services.bid_place(
                task=task,
                bidder=actor,
                price=_int(data.get("price")) or 0,
                eta_hours=_int(data.get("eta_hours")) or 0,
                plan=data.get("plan", ""),
            )
            message = "Your bid is in."
        elif action == "award":
            bid = selectors.access_bid(viewer=viewer, bid_id=_int(data.get("bid")) or 0)
            services.bid_award(bid=bid, actor=actor)
            message = "Awarded."
        elif action == "claim":
            services.task_claim(task=task, claimant=actor)
            message = "The task is yours at the asking price."
        elif action == "start":
            services.task_start(task=task, actor=actor)
            message = "Started."
        elif action == "deliver":
            services.delivery_submit(
                task=task,
                actor=actor,
                text=data.get("text", ""),
                files=request.FILES.getlist("files"),
                idempotency_key=data.get("form_key") or None,
            )
            message = "Delivered; the poster has been notified."
        elif action == "subtask":
            child = services.task_post(
                poster=actor,
                parent=task,
                title=data.get("title", ""),
                description=data.get("description", ""),
                bounty=_int(data.get("bounty")) or 0,
                depends_on=[
                    selectors.access_task(viewer=viewer, task_id=_int(pk) or 0)
                    for pk in data.getlist("depends_on")
                ],
                idempotency_key=data.get("form_key") or None,
            )
            message = f"Subtask #{child.pk} posted; {child.bounty} credits moved from the escrow."
        elif action == "accept":
            services.delivery_accept(delivery=delivery(), actor=actor)
            message = "Accepted and settled."
        elif action == "revise":
            services.revision_request(
                delivery=delivery(), actor=actor, message=data.get("message", "")
            )
            message = "Revision requested."
        elif action == "reject":
            services.delivery_reject(
                delivery=delivery(), actor=actor, reason=data.get("reason", "")
            )
            message = "Rejected; a dispute is open for staff to resolve."
        elif action == "publish":
            services.task_publish(task=task, actor=actor)
            message = f"Published. {task.bounty} credits are held in escrow."
        elif action == "cancel":
            was_draft = task.state == Task.State.DRAFT
            services.task_cancel(task=task, actor=actor)
            message = "Draft discarded." if was_draft else "Cancelled; the escrow was refunded."
        elif action == "abandon":
            services.task_abandon(task=task, actor=actor, reason=data.get("reason", ""))
            message = "You gave the task up; it is open for bids again."
        elif action == "withdraw":
            bid = selectors.access_bid(viewer=viewer, bid_id=_int(data.get("bid")) or 0)
            services.bid_withdraw(bid=bid, actor=actor)
            message = "Your bid is withdrawn."
        elif action == "escalate":
            services.task_escalate(task=task, actor=actor, reason=data.get("reason", ""))
            message = "Escalated: a dispute is open for staff to resolve."
        elif action == "answer":
            dispute = selectors.access_dispute(viewer=viewer, task=task)
            if dispute is None:
                raise NotFound(f"Task #{task.pk} has no dispute you can see.")
            services.dispute_evidence_add(dispute=dispute, actor=actor, text=data.get("text", ""))
            message = "Your side of the dispute is saved; staff will read it."
        elif action == "depend":
            depends_on = selectors.access_task(
                viewer=viewer, task_id=_int(data.get("depends_on")) or 0
            )
            services.task_dependency_add(task=task, depends_on=depends_on, actor=actor)
            message = f"This task now waits for #{depends_on.pk} to be accepted."
        else:
            return render(request, "marketplace/not_found.html", status=404)
    except MarketError as error:
        messages.error(request, capfirst(str(error)))
        if action == "deliver":
            # A refused delivery comes back with what was typed, not an empty form.
            with consistent_reads():
                context = _task_context(request, task_id)
                context["typed"] = {"text": data.get("text", "")}
                return render(request, "marketplace/task.html", context, status=400)
    else:
        messages.success(request, message)
    return redirect(reverse("task-detail", args=[task_id]))


@login_required
def delivery_file(request: HttpRequest, file_id: int) -> HttpResponseBase:
    viewer = selectors.viewer_for_request(request)
    try:
        stored = selectors.access_delivery_file(viewer=viewer, file_id=file_id)
    except MarketError:
        return render(request, "marketplace/not_found.html", status=404)
    return delivery_file_response(stored)


@login_required
def dashboard(request: HtmxHttpRequest) -> HttpResponse:
    """The user's tasks, bids and notifications; refetched (htmx) whenever a notice reaches them.
    Showing the notifications marks them read."""
    _, participant = selectors.viewer_signed_in(request)
    context = {
        "posted": selectors.tasks_posted_by(participant=participant)[:50],
        "assigned": selectors.tasks_assigned_to(participant=participant)[:50],
        "bids": selectors.bids_of(participant=participant)[:50],
        # Read before they are marked read below, so the page still shows which ones are new.
        "notifications": list(selectors.notifications_for(participant=participant, limit=20)),
        "available": _available(participant),
    }
    services.notifications_mark_read(participant=participant, up_to=timezone.now())
    template = "marketplace/dashboard.html#work" if request.htmx else "marketplace/dashboard.html"
    return render(request, template, context)


@login_required
def notifications_unread(request: HttpRequest) -> HttpResponse:
    """The count of unread notifications beside "My work", refetched on each notice."""
    return render(request, "base.html#unread")
