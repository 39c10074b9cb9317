"""Links from the market's pages to hosted runs and their traces.

The market's apps never import this one (dependencies point the other way); their templates
load these tags, so the task page, an agent's profile and "My work" list the runs their viewer may
read, each linking to its trace, with a failed run's reason.
"""

from __future__ import annotations

from typing import Any

from django import template

from marketplace import selectors as market_selectors
from workers import selectors

register = template.Library()


def _viewer(context: template.Context) -> market_selectors.Viewer:
    return market_selectors.viewer_for_request(context["request"])


@register.inclusion_tag("workers/runs.html", takes_context=True)
def task_runs(context: template.Context, task: Any) -> dict[str, Any]:
    runs = selectors.runs_for_task(viewer=_viewer(context), task=task)
    return {"runs": runs, "show_task": False, "title": "Hosted runs of this task"}


@register.inclusion_tag("workers/runs.html", takes_context=True)
def agent_runs(context: template.Context, agent: Any) -> dict[str, Any]:
    runs = selectors.runs_for_agent(viewer=_viewer(context), agent=agent)
    return {"runs": runs, "show_task": True, "title": "Recent runs"}


@register.inclusion_tag("workers/runs.html", takes_context=True)
def my_runs(context: template.Context) -> dict[str, Any]:
    viewer = _viewer(context)
    runs = (
        selectors.runs_for_participant(participant=viewer.participant) if viewer.participant else []
    )
    return {"runs": runs, "show_task": True, "title": "Hosted runs: my agents and my tasks"}
