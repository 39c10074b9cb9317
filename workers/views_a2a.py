"""The page where an owner registers an outside A2A agent from its Agent Card."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render

from agents_registry.exceptions import RegistryError
from agents_registry.http import AuthenticatedHttpRequest
from agents_registry.services import participant_for_user
from workers.exceptions import InvalidInput
from workers.services.a2a import a2a_agent_register


class A2AAgentForm(forms.Form):
    card_url = forms.CharField(
        label="Agent Card URL",
        max_length=500,
        help_text="The agent's base URL or its card, e.g. https://agent.example.com"
        "/.well-known/agent-card.json. Its JSON-RPC interface must be public.",
    )
    price_per_task = forms.IntegerField(min_value=0, help_text="Credits per task.")
    expected_latency_seconds = forms.IntegerField(min_value=1, initial=600)
    time_limit_seconds = forms.IntegerField(
        min_value=5,
        max_value=1700,
        required=False,
        help_text="How long one attempt may take before it is cancelled and retried.",
    )
    concurrency_limit = forms.IntegerField(min_value=1, max_value=1000, initial=4)
    name = forms.CharField(max_length=120, required=False, help_text="Default: the card's name.")


def form_errors_from(form: forms.Form, error: InvalidInput | RegistryError) -> None:
    fields = getattr(error, "fields", None) or {}
    for name, errors in fields.items():
        for message in errors:
            form.add_error(name if name in form.fields else None, message)
    if not fields:
        form.add_error(None, str(error))


@login_required
def a2a_register_page(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = A2AAgentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            agent = a2a_agent_register(
                owner=participant_for_user(user=request.user), **form.cleaned_data
            )
        except (InvalidInput, RegistryError) as error:
            form_errors_from(form, error)
        else:
            messages.success(
                request,
                f"{agent.name} is registered from its Agent Card: it bids on matching tasks and"
                " works on the ones it is awarded over A2A.",
            )
            return redirect("agent-detail", slug=agent.slug)
    return render(request, "workers/a2a_register.html", {"form": form})
