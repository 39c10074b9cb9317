"""HTML pages of event subscriptions: the list with a form to subscribe (yourself or one of your
agents), and one subscription's page with its actions and delivery log."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from agents_registry.models import Participant
from marketplace import selectors as market_selectors
from workers import events, selectors
from workers.exceptions import InvalidInput, SubscriptionNotFound
from workers.models import EventDelivery, EventSubscription
from workers.services import subscriptions as services

LOG_PAGE_SIZE = 25


class SubscriptionForm(forms.Form):
    subscriber = forms.ChoiceField(label="Events of", required=False)
    url = forms.CharField(
        label="Endpoint URL", max_length=500, help_text="A public URL that accepts POST requests."
    )
    event_types = forms.MultipleChoiceField(
        label="Events",
        choices=[(name, f"{name}: {text}") for name, text in events.EVENT_TYPES.items()],
        widget=forms.CheckboxSelectMultiple,
    )
    description = forms.CharField(max_length=200, required=False)

    def __init__(self, *args: Any, participant: Participant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        agents = participant.owned_agents.order_by("name")
        subscriber = self.fields["subscriber"]
        assert isinstance(subscriber, forms.ChoiceField)  # declared so above
        subscriber.choices = [("", "Me")] + [
            (agent.slug, f"My agent {agent.name}") for agent in agents
        ]
        self.participant = participant

    def subscriber_participant(self) -> Participant:
        slug = self.cleaned_data["subscriber"]
        if not slug:
            return self.participant
        return self.participant.owned_agents.get(slug=slug).participant


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"  # the page may hold a secret shown once
    return response


@login_required
def subscriptions_page(request: HttpRequest) -> HttpResponse:
    viewer, participant = market_selectors.viewer_signed_in(request)
    form = SubscriptionForm(request.POST or None, participant=participant)
    secret, created = None, None
    if request.method == "POST" and form.is_valid():
        try:
            created, secret = services.subscription_create(
                participant=form.subscriber_participant(),
                url=form.cleaned_data["url"],
                event_types=form.cleaned_data["event_types"],
                description=form.cleaned_data["description"],
            )
        except InvalidInput as refused:
            for name, errors in refused.fields.items():
                for message in errors:
                    form.add_error(name if name in form.fields else None, message)
            if not refused.fields:
                form.add_error(None, str(refused))
        else:
            form = SubscriptionForm(participant=participant)
    context = {
        "form": form,
        "subscriptions": list(selectors.subscriptions_of(viewer=viewer)),
        "created": created,
        "secret": secret,
        "event_types": events.EVENT_TYPES,
    }
    return _no_store(render(request, "workers/subscriptions.html", context))


@login_required
def subscription_page(request: HttpRequest, subscription_id: int) -> HttpResponse:
    viewer = market_selectors.viewer_for_request(request)
    try:
        subscription = selectors.access_subscription(viewer=viewer, subscription_id=subscription_id)
    except SubscriptionNotFound as error:
        raise Http404(str(error)) from error
    secret = None
    if request.method == "POST":
        action = request.POST.get("action", "")
        if action == "pause":
            services.subscription_pause(subscription=subscription)
            messages.success(request, "Paused: events wait here until you resume.")
        elif action == "resume":
            waiting = services.subscription_resume(subscription=subscription)
            messages.success(request, f"Resumed; {waiting} waiting deliveries are on their way.")
        elif action == "rotate":
            secret = services.subscription_secret_rotate(subscription=subscription)
        elif action == "ping":
            services.subscription_ping(subscription=subscription)
            messages.success(request, "A ping is on its way; it appears in the log below.")
        elif action == "retry":
            delivery = get_object_or_404(
                EventDelivery, pk=request.POST.get("delivery"), subscription=subscription
            )
            services.delivery_retry(delivery=delivery)
            messages.success(request, f"Delivery {delivery.event_id} is sent again.")
        elif action == "delete":
            services.subscription_delete(subscription=subscription)
            messages.success(request, "The subscription is deleted.")
            return redirect("subscriptions")
        if secret is None:
            return redirect("subscription", subscription_id=subscription.pk)
        subscription.refresh_from_db()
    log = Paginator(
        selectors.subscription_deliveries(subscription=subscription), LOG_PAGE_SIZE
    ).get_page(request.GET.get("page"))
    context = {
        "subscription": subscription,
        "secret": secret,
        "log": log,
        "active": subscription.status == EventSubscription.Status.ACTIVE,
    }
    return _no_store(render(request, "workers/subscription.html", context))
