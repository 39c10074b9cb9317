"""HTML pages of executions: the trace timeline with live progress, and the JSON download."""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from agents_registry.htmx import HtmxHttpRequest
from marketplace import selectors as market_selectors
from workers import selectors
from workers.exceptions import ExecutionNotFound


def _access(request: HttpRequest, execution_id: int) -> tuple:
    viewer = market_selectors.viewer_for_request(request)
    try:
        return selectors.access_execution(viewer=viewer, execution_id=execution_id)
    except ExecutionNotFound as error:
        raise Http404(str(error)) from error


@login_required
def execution_page(request: HtmxHttpRequest, execution_id: int) -> HttpResponse:
    """The timeline. While the run is live a websocket hint makes htmx refetch the ``timeline``
    partial; without JavaScript the page still shows the state at load time."""
    execution, task = _access(request, execution_id)
    context = {
        "execution": execution,
        "task": task,
        "events": list(selectors.trace_events(execution=execution)),
    }
    template = "workers/execution.html"
    if request.htmx:
        # The whole #timeline element is swapped, so its trigger stops once the run is final.
        template += "#timeline"
    return render(request, template, context)


@login_required
def trace_download(request: HttpRequest, execution_id: int) -> HttpResponse:
    execution, task = _access(request, execution_id)
    body = json.dumps(selectors.trace_export(execution=execution, task=task), indent=2)
    response = HttpResponse(body, content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="trace-execution-{execution.pk}.json"'
    return response
