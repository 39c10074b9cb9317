"""Input and output shapes of the market API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from marketplace.models import Bid, Delivery, Task, TaskEvent
from marketplace.sanitize import sanitize_text


class ParticipantOutput(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    display_name = serializers.CharField()


class TaskOutput(serializers.ModelSerializer):
    poster = ParticipantOutput()
    assignee = ParticipantOutput(allow_null=True)
    parent_id = serializers.IntegerField(allow_null=True)
    active_bids = serializers.IntegerField(required=False, default=None, allow_null=True)

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
            "state",
            "visibility",
            "deadline",
            "auto_award",
            "bidding_closes_at",
            "poster",
            "assignee",
            "parent_id",
            "active_bids",
            "created_at",
            "updated_at",
        ]


class TaskMatchOutput(TaskOutput):
    similarity = serializers.SerializerMethodField()

    class Meta(TaskOutput.Meta):
        fields = [*TaskOutput.Meta.fields, "similarity"]

    def get_similarity(self, task: Task) -> float:
        return round(1.0 - float(task.distance), 4)


class TaskDetailOutput(TaskOutput):
    depends_on = serializers.SerializerMethodField()
    children = serializers.SerializerMethodField()

    class Meta(TaskOutput.Meta):
        fields = [*TaskOutput.Meta.fields, "depends_on", "children"]

    def get_depends_on(self, task: Task) -> list[int]:
        return sorted(dependency.pk for dependency in task.depends_on.all())

    def get_children(self, task: Task) -> list[dict]:
        return [
            {"id": child.pk, "title": child.title, "state": child.state, "bounty": child.bounty}
            for child in task.children.order_by("pk")
        ]


class TaskQuery(serializers.Serializer):
    """The task list's query parameters."""

    q = serializers.CharField(required=False, help_text="words in title or description")
    state = serializers.ChoiceField(choices=Task.State.choices, default=Task.State.OPEN)
    min_bounty = serializers.IntegerField(required=False, min_value=0)
    max_bounty = serializers.IntegerField(required=False, min_value=0)
    mine = serializers.ChoiceField(
        choices=[("posted", "posted by me"), ("assigned", "assigned to me")], required=False
    )
    parent = serializers.IntegerField(required=False, min_value=1, help_text="a task's id")


class TaskDependencyInput(serializers.Serializer):
    depends_on = serializers.IntegerField(
        min_value=1, help_text="A sibling subtask (same parent, same poster) to wait for."
    )


class TaskPostInput(serializers.Serializer):
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=20_000)
    acceptance_criteria = serializers.CharField(max_length=20_000, required=False, default="")
    checks = serializers.JSONField(required=False, default=dict)
    bounty = serializers.IntegerField(min_value=1)
    deadline = serializers.DateTimeField(required=False, allow_null=True, default=None)
    visibility = serializers.ChoiceField(choices=Task.Visibility.choices, default="public")
    depends_on = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, default=list
    )
    auto_award = serializers.JSONField(required=False, default=dict)
    draft = serializers.BooleanField(
        required=False, default=False, help_text="Save unfunded; publish later to fund and open."
    )


class BidInput(serializers.Serializer):
    price = serializers.IntegerField(min_value=1)
    eta_hours = serializers.IntegerField(min_value=1)
    plan = serializers.CharField(max_length=2000)


class BidOutput(serializers.ModelSerializer):
    bidder = ParticipantOutput()

    class Meta:
        model = Bid
        fields = ["id", "task_id", "bidder", "price", "eta_hours", "plan", "status", "score"]
        read_only_fields = fields


_TIMESTAMP = serializers.DateTimeField()


def _participant(participant: Any) -> dict[str, Any]:
    return {
        "id": participant.pk,
        "kind": participant.kind,
        "display_name": participant.display_name,
    }


def bid_output(bid: Bid) -> dict[str, Any]:
    """``BidOutput(bid).data`` without building the serializer's fields for every answer (they
    cost more than the rest of the bid's answer): the bid endpoint's body."""
    return {
        "id": bid.pk,
        "task_id": bid.task_id,
        "bidder": _participant(bid.bidder),
        "price": bid.price,
        "eta_hours": bid.eta_hours,
        "plan": bid.plan,
        "status": bid.status,
        "score": None if bid.score is None else float(bid.score),
    }


class ReasonInput(serializers.Serializer):
    reason = serializers.CharField(max_length=5000)


class MessageInput(serializers.Serializer):
    message = serializers.CharField(max_length=5000)


class EvidenceInput(serializers.Serializer):
    text = serializers.CharField(max_length=5000)


class DeliveryInput(serializers.Serializer):
    text = serializers.CharField(required=False, allow_blank=True, default="", max_length=100_000)
    data = serializers.JSONField(required=False, default=None, allow_null=True)
    skills_used = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, default=list
    )
    files = serializers.ListField(
        child=serializers.FileField(allow_empty_file=False), required=False, default=list
    )


class DeliveryFileOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    content_type = serializers.CharField()
    size = serializers.IntegerField()


class DeliveryOutput(serializers.ModelSerializer):
    text_html = serializers.SerializerMethodField()
    files = DeliveryFileOutput(many=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "task_id",
            "submitter_id",
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
            "created_at",
        ]

    def get_text_html(self, delivery: Delivery) -> str:
        return sanitize_text(delivery.text)


def delivery_output(delivery: Delivery) -> dict[str, Any]:
    """``DeliveryOutput(delivery).data`` without building the serializer's fields: the deliver
    endpoint's body."""
    return {
        "id": delivery.pk,
        "task_id": delivery.task_id,
        "submitter_id": delivery.submitter_id,
        "text": delivery.text,
        "text_html": sanitize_text(delivery.text),
        "data": delivery.data,
        "skills_used": [int(pk) for pk in delivery.skills_used],
        "status": delivery.status,
        "check_status": delivery.check_status,
        "check_results": delivery.check_results,
        "review_message": delivery.review_message,
        "review_deadline": _TIMESTAMP.to_representation(delivery.review_deadline),
        "files": [
            {"id": f.pk, "name": f.name, "content_type": f.content_type, "size": f.size}
            for f in delivery.files.all()
        ],
        "created_at": _TIMESTAMP.to_representation(delivery.created_at),
    }


class EventOutput(serializers.ModelSerializer):
    actor_id = serializers.IntegerField(allow_null=True)

    class Meta:
        model = TaskEvent
        fields = ["id", "kind", "actor_id", "data", "created_at"]


class NotificationOutput(serializers.Serializer):
    id = serializers.IntegerField()
    task_id = serializers.IntegerField()
    message = serializers.CharField()
    created_at = serializers.DateTimeField()
    read_at = serializers.DateTimeField(allow_null=True)
