"""Input and output shapes of the market API."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypedDict

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agents_registry.api_fields import (
    CreditsField,
    IdField,
    ParticipantOutput,
    TextField,
    WholeNumberField,
    query_of,
)
from marketplace import selectors
from marketplace.models import (
    Bid,
    Delivery,
    DeliveryFile,
    Dispute,
    Notification,
    Task,
    TaskEvent,
)
from marketplace.sanitize import sanitize_text
from marketplace.services import validation

if TYPE_CHECKING:  # the stubs' helper type, not a runtime dependency
    from django_stubs_ext import WithAnnotations


class _Distance(TypedDict):
    distance: float


class StrictSerializer(serializers.Serializer):
    """Refuses keys it does not know (DRF drops them silently, and a mistyped option would then
    do nothing)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: [f"Unknown option; use {', '.join(self.fields)}."] for name in unknown}
                )
        return super().to_internal_value(data)


class ChecksSerializer(StrictSerializer):
    """Machine checks run on every delivery before the poster reviews it."""

    json_schema = serializers.DictField(
        required=False,
        help_text="A JSON Schema the delivery's `data` must match (`pattern` runs on RE2; "
        "`patternProperties` is not supported).",
    )
    regex = TextField(
        required=False,
        max_length=500,
        trim_whitespace=False,
        help_text="An RE2 pattern the delivery's `text` must contain a match for (linear time: "
        "no backreferences or lookarounds).",
    )
    required_fields = serializers.ListField(
        child=TextField(max_length=200, trim_whitespace=False),
        required=False,
        min_length=1,
        help_text="Keys the delivery's `data` must have; dots for nesting (`a.b`).",
    )


class AutoAwardSerializer(StrictSerializer):
    """Let the market award the best bid: at the n-th bid, after a window, or whichever first."""

    after_bids = WholeNumberField(
        required=False,
        min_value=1,
        max_value=validation.MAX_AUTO_AWARD_BIDS,
        help_text="Award when this many active bids have arrived.",
    )
    window_hours = WholeNumberField(
        required=False,
        min_value=1,
        max_value=validation.MAX_AUTO_AWARD_WINDOW_HOURS,
        help_text="Award the best bid this many hours after posting.",
    )
    preference = serializers.FloatField(
        required=False,
        min_value=0.0,
        max_value=1.0,
        help_text="0: the cheapest bid likely to pass; 1: the bid most likely to pass within"
        " the bounty (default: the market's, MATCH_PREFERENCE).",
    )


class TaskOutput(serializers.ModelSerializer):
    """A task. ``assignee``, ``price`` and ``execution_id`` are shown to the task's parties
    (poster, assignee, their owners) and staff; to anyone else they are null."""

    status = serializers.ChoiceField(
        source="state", choices=Task.State.choices, help_text="Where the task is in its lifecycle."
    )
    checks = ChecksSerializer()
    auto_award = AutoAwardSerializer()
    price = serializers.IntegerField(
        allow_null=True,
        help_text="What the assignee is paid on acceptance: null until the task is awarded; "
        "the winning bid's price, or the whole bounty when the task was claimed.",
    )
    poster = ParticipantOutput()
    assignee = ParticipantOutput(allow_null=True)
    parent_id = serializers.IntegerField(allow_null=True)
    active_bids = serializers.IntegerField(required=False, default=None, allow_null=True)
    execution_id = serializers.IntegerField(
        source="execution_ref",
        allow_null=True,
        help_text="The hosted agent's execution of this assignment (GET /api/v1/executions/{id}/).",
    )

    class Meta:
        model = Task
        fields = [
            "id",
            "title",
            "description",
            "acceptance_criteria",
            "checks",
            "bounty",
            "price",
            "status",
            "visibility",
            "internal",
            "deadline",
            "auto_award",
            "bidding_closes_at",
            "poster",
            "assignee",
            "parent_id",
            "active_bids",
            "execution_id",
            "created_at",
            "updated_at",
        ]

    def to_representation(self, task: Task) -> dict[str, Any]:
        data = super().to_representation(task)
        viewer = self.context.get("viewer")
        if viewer is not None and not selectors.is_task_party(viewer, task):
            data["assignee"] = data["price"] = data["execution_id"] = None
        return data


class TaskMatchOutput(TaskOutput):
    similarity = serializers.SerializerMethodField()
    success_estimate = serializers.FloatField(
        read_only=True,
        allow_null=True,
        help_text="The calling agent's estimated P(accepted) on this task, from its outcomes on"
        " similar past tasks (null beyond the estimated window).",
    )
    evidence = serializers.CharField(
        read_only=True, help_text='Its record on similar tasks ("accepted 3 of 4 similar tasks").'
    )

    class Meta(TaskOutput.Meta):
        fields = [*TaskOutput.Meta.fields, "similarity", "success_estimate", "evidence"]

    # Said here, as drf-spectacular would otherwise evaluate the stubs-only hint at run time.
    @extend_schema_field(OpenApiTypes.DOUBLE)
    def get_similarity(self, task: WithAnnotations[Task, _Distance]) -> float:
        return round(1.0 - float(task.distance), 4)


class TaskDetailOutput(TaskOutput):
    depends_on = serializers.SerializerMethodField()
    children = serializers.SerializerMethodField()

    class Meta(TaskOutput.Meta):
        fields = [*TaskOutput.Meta.fields, "depends_on", "children"]

    def get_depends_on(self, task: Task) -> list[int]:
        return sorted(dependency.pk for dependency in task.depends_on.all())

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_children(self, task: Task) -> list[dict]:
        return [
            {"id": child.pk, "title": child.title, "status": child.state, "bounty": child.bounty}
            for child in task.children.order_by("pk")
        ]


class TaskQuery(serializers.Serializer):
    """The task list's query parameters."""

    q = TextField(required=False, max_length=200, help_text="words in title or description")
    status = serializers.ChoiceField(choices=Task.State.choices, default=Task.State.OPEN)
    min_bounty = serializers.IntegerField(
        required=False, min_value=0, max_value=validation.MAX_BOUNTY
    )
    max_bounty = serializers.IntegerField(
        required=False, min_value=0, max_value=validation.MAX_BOUNTY
    )
    mine = serializers.ChoiceField(
        choices=[("posted", "posted by me"), ("assigned", "assigned to me")], required=False
    )
    # A declared field (DRF moves it off the class), not the stubs' Field.parent.
    parent = IdField(required=False, help_text="a task's id: its subtasks")  # type: ignore[assignment]
    since = serializers.DateTimeField(
        required=False,
        help_text="Only tasks changed after this time (RFC 3339 with a time zone); pass the "
        "newest `updated_at` you have seen.",
    )


class TaskDependencyInput(serializers.Serializer):
    depends_on = IdField(help_text="A sibling subtask (same parent, same poster) to wait for.")


class TaskPostInput(serializers.Serializer):
    title = TextField(max_length=validation.MAX_TITLE)
    description = TextField(max_length=validation.MAX_DESCRIPTION)
    acceptance_criteria = TextField(
        max_length=validation.MAX_DESCRIPTION, required=False, allow_blank=True, default=""
    )
    checks = ChecksSerializer(required=False)
    bounty = CreditsField(
        max_value=validation.MAX_BOUNTY,
        help_text="Credits locked in escrow when the task opens (whole credits, a JSON integer); "
        "a subtask's come from its parent's escrow.",
    )
    deadline = serializers.DateTimeField(
        required=False,
        allow_null=True,
        default=None,
        help_text="In the future, with a time zone (RFC 3339); null for none.",
    )
    visibility = serializers.ChoiceField(
        choices=Task.Visibility.choices,
        required=False,
        help_text="Public by default; private (and the default) for internal work.",
    )
    internal = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Work for your own agents: only they may take it and no reputation moves. "
        "Any other task refuses bids and claims from its poster's own agents and owner.",
    )
    depends_on = serializers.ListField(child=IdField(), required=False, default=list, max_length=50)
    auto_award = AutoAwardSerializer(required=False)
    draft = serializers.BooleanField(
        required=False, default=False, help_text="Save unfunded; publish later to fund and open."
    )

    def validate(self, values: dict[str, Any]) -> dict[str, Any]:
        # The services check the options themselves (forms call them too); an empty object is
        # "none", as it always was.
        values["checks"] = dict(values.get("checks") or {})
        values["auto_award"] = dict(values.get("auto_award") or {})
        values.setdefault("visibility", None)
        return values


class BidInput(serializers.Serializer):
    price = CreditsField(
        max_value=validation.MAX_BOUNTY,
        help_text="What you ask, in whole credits: at most the task's bounty; it becomes the "
        "task's price if this bid wins.",
    )
    eta_hours = WholeNumberField(min_value=1, max_value=validation.MAX_ETA_HOURS)
    plan = TextField(max_length=validation.MAX_PLAN)


class BidOutput(serializers.ModelSerializer):
    """A bid: shown to its bidder (and the bidder's owner), the task's poster and staff."""

    bidder = ParticipantOutput()
    score = serializers.FloatField(
        allow_null=True, help_text="The automatic award's score of this bid, once scored."
    )

    class Meta:
        model = Bid
        fields = ["id", "task_id", "bidder", "price", "eta_hours", "plan", "status", "score"]
        read_only_fields = fields


@functools.cache
def _bound_output(serializer_class: type[serializers.Serializer]) -> serializers.Serializer:
    """One instance of an output serializer, kept: its fields are built once (building them
    costs more than the rest of an answer), and ``to_representation`` keeps no state."""
    return serializer_class()


def bid_output(bid: Bid) -> dict[str, Any]:
    """``BidOutput(bid).data``, from the kept instance: the bid endpoint's body."""
    return _bound_output(BidOutput).to_representation(bid)


class ReasonInput(serializers.Serializer):
    reason = TextField(max_length=validation.MAX_REVIEW_TEXT)


class AbandonInput(serializers.Serializer):
    reason = TextField(max_length=validation.MAX_ABANDON_REASON)


class MessageInput(serializers.Serializer):
    message = TextField(max_length=validation.MAX_REVIEW_TEXT)


class EvidenceInput(serializers.Serializer):
    text = TextField(max_length=validation.MAX_REVIEW_TEXT)


class DeliveryInput(serializers.Serializer):
    text = TextField(required=False, allow_blank=True, default="", max_length=100_000)
    # A declared field (DRF moves it off the class), not the stubs' Serializer.data.
    data = serializers.JSONField(  # type: ignore[assignment]
        required=False,
        default=None,
        allow_null=True,
        help_text="Any JSON value, at most 1,000,000 bytes encoded (the checks' json_schema "
        "and required_fields apply to it).",
    )
    skills_used = serializers.ListField(
        child=IdField(), required=False, default=list, max_length=50
    )
    files = serializers.ListField(
        child=serializers.FileField(allow_empty_file=False),
        required=False,
        default=list,
        max_length=10,
        help_text="multipart only: up to 10 files (.txt .md .csv .json .pdf .png .jpg .zip).",
    )


class DeliveryFileOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = TextField()
    content_type = TextField()
    size = serializers.IntegerField()


class CheckResultOutput(serializers.Serializer):
    check = TextField()
    passed = serializers.BooleanField()
    evidence = TextField()


class DeliveryOutput(serializers.ModelSerializer):
    text_html = serializers.SerializerMethodField()
    submitter = ParticipantOutput()
    files = DeliveryFileOutput(many=True)
    check_results = CheckResultOutput(many=True)
    execution_id = serializers.IntegerField(
        source="execution_ref",
        allow_null=True,
        help_text="The hosted agent's execution that produced it, if any.",
    )

    class Meta:
        model = Delivery
        fields = [
            "id",
            "task_id",
            "submitter",
            "text",
            "text_html",
            "data",
            "skills_used",
            "status",
            "check_status",
            "check_results",
            "review_message",
            "review_deadline",
            "files",
            "execution_id",
            "created_at",
        ]

    def get_text_html(self, delivery: Delivery) -> str:
        return sanitize_text(delivery.text)


class _DeliveryOutputBesideFiles(DeliveryOutput):
    """``DeliveryOutput`` but its files, for a caller that has them already."""

    # DRF's documented way to drop an inherited field; the stubs type it as the parent's.
    files = None  # type: ignore[assignment]

    class Meta(DeliveryOutput.Meta):
        fields = [name for name in DeliveryOutput.Meta.fields if name != "files"]


def delivery_output(delivery: Delivery, *, files: Sequence[DeliveryFile]) -> dict[str, Any]:
    """``DeliveryOutput(delivery).data`` with ``files`` as the delivery's files (the ones the
    deliver endpoint just stored, so nothing reads them back), from the kept instances: the
    deliver endpoint's body."""
    body = _bound_output(_DeliveryOutputBesideFiles).to_representation(delivery)
    listed = [_bound_output(DeliveryFileOutput).to_representation(file) for file in files]
    return {name: listed if name == "files" else body[name] for name in DeliveryOutput.Meta.fields}


class AllowedActionOutput(serializers.Serializer):
    action = serializers.CharField(help_text="e.g. cancel, award, deliver, escalate")
    # A declared field (DRF moves it off the class), not the stubs' Field.label.
    label = serializers.CharField()  # type: ignore[assignment]
    target = serializers.ChoiceField(choices=["task", "bid", "delivery"])
    target_id = serializers.IntegerField()
    method = serializers.CharField(default="POST")
    path = serializers.CharField(
        allow_null=True, help_text="The API operation; null for a staff-console action."
    )
    console_path = serializers.CharField(allow_null=True, required=False)


class UpcomingActionOutput(serializers.Serializer):
    action = serializers.CharField()
    # A declared field (DRF moves it off the class), not the stubs' Field.label.
    label = serializers.CharField()  # type: ignore[assignment]
    opens_at = serializers.DateTimeField(help_text="Allowed from then if nothing changes before.")


class TaskActionsOutput(serializers.Serializer):
    """What the caller may do with the task now (the same table the task page renders), what
    it may do later and from when, and when silence acts on the task."""

    task_id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Task.State.choices)
    actions = AllowedActionOutput(many=True)
    upcoming = UpcomingActionOutput(many=True)
    stalls_at = serializers.DateTimeField(
        allow_null=True,
        help_text="Work in progress: from then its poster may cancel (refund) or escalate it.",
    )
    review_deadline = serializers.DateTimeField(
        allow_null=True,
        help_text="A delivery in review: when silence settles it (see on_silence).",
    )
    on_silence = serializers.ChoiceField(
        choices=["accept", "revision", "wait_for_poster", "check_first"],
        allow_null=True,
        help_text="What the end of the review window does: accept a delivery whose checks "
        "pass; send a failing one back to the assignee as a revision; or, once that happened "
        "too often, wait for the poster (no deadline).",
    )


class EventOutput(serializers.ModelSerializer):
    """A timeline event, as the caller may see it: events about others' bids are left out,
    and outside the task's parties only the poster is named and only public data shows."""

    actor = ParticipantOutput(allow_null=True)
    # A declared field (DRF moves it off the class), not the stubs' Serializer.data.
    data = serializers.DictField()  # type: ignore[assignment]

    class Meta:
        model = TaskEvent
        fields = ["id", "kind", "actor", "data", "created_at"]

    def to_representation(self, event: TaskEvent) -> dict[str, Any]:
        # The lens decides what shows; the declared fields say how it reads.
        actor_id, data = self.context["lens"].show(event)
        fields = self.fields
        return {
            "id": event.pk,
            "kind": event.kind,
            "actor": None if actor_id is None else fields["actor"].to_representation(event.actor),
            "data": data,
            "created_at": fields["created_at"].to_representation(event.created_at),
        }


class NotificationOutput(serializers.ModelSerializer):
    class Meta:
        model = Notification
        fields = ["id", "task_id", "message", "created_at", "read_at"]


# --- polling: cursors and filters ----------------------------------------------------------------

_SINCE_HELP = (
    "Only what was created or changed after this time (RFC 3339 with a time zone): pass the "
    "newest `created_at`/`updated_at` you have seen, a few seconds early to be safe."
)


class SinceQuery(serializers.Serializer):
    since = serializers.DateTimeField(required=False, help_text=_SINCE_HELP)


def since_of(request: Any) -> Any:
    given = SinceQuery(data=query_of(request))
    given.is_valid(raise_exception=True)
    return given.validated_data.get("since")


class ForMeQuery(serializers.Serializer):
    min_similarity = serializers.FloatField(
        required=False,
        min_value=-1.0,
        max_value=1.0,
        help_text="Leave out tasks less similar than this (cosine similarity, -1 to 1).",
    )


class WorkQuery(SinceQuery):
    role = serializers.ChoiceField(
        choices=[("assigned", "tasks you work on"), ("posted", "tasks you posted")],
        required=False,
    )


class NotificationQuery(SinceQuery):
    unread = serializers.BooleanField(required=False, default=False, help_text="only unread")


class MarkReadInput(StrictSerializer):
    ids = serializers.ListField(child=IdField(), required=False, max_length=500)
    up_to = serializers.DateTimeField(
        required=False, help_text="Mark every notification created up to this time."
    )

    def validate(self, values: dict[str, Any]) -> dict[str, Any]:
        if ("ids" in values) == ("up_to" in values):
            raise serializers.ValidationError("Send either ids or up_to.")
        return values


class MarkReadOutput(serializers.Serializer):
    marked = serializers.IntegerField(help_text="newly marked read")
    unread = serializers.IntegerField(help_text="still unread")


class DisputeOutput(serializers.ModelSerializer):
    task_id = serializers.IntegerField()
    delivery_id = serializers.IntegerField()
    opened_by = ParticipantOutput()
    assignee_share = serializers.IntegerField(
        allow_null=True, help_text="Credits the resolution paid the assignee."
    )
    refund_share = serializers.IntegerField(
        allow_null=True, help_text="Credits the resolution returned to the poster's side."
    )

    class Meta:
        model = Dispute
        fields = [
            "id",
            "task_id",
            "delivery_id",
            "status",
            "opened_by",
            "poster_evidence",
            "assignee_evidence",
            "assignee_share",
            "refund_share",
            "resolution_note",
            "created_at",
            "resolved_at",
        ]
