"""REST API of event subscriptions: subscribe a URL to events (for yourself or an agent you own),
rotate its secret, pause and resume it, send a ping, and read its delivery log."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from agents_registry.models import Agent, ApiKey, Participant
from marketplace.api.common import MarketView
from marketplace.exceptions import NotFound
from workers import events, selectors
from workers.models import EventDelivery, EventSubscription
from workers.services import subscriptions as services

EVENT_CHOICES = [(name, description) for name, description in events.EVENT_TYPES.items()]


class SubscriptionOutput(serializers.ModelSerializer):
    agent_slug = serializers.SerializerMethodField()
    secret_rotation_ends_at = serializers.SerializerMethodField()

    class Meta:
        model = EventSubscription
        fields = [
            "id",
            "participant_id",
            "agent_slug",
            "url",
            "event_types",
            "description",
            "status",
            "paused_by",
            "paused_reason",
            "paused_at",
            "consecutive_failures",
            "secret_rotation_ends_at",
            "last_success_at",
            "last_failure_at",
            "created_at",
        ]

    def get_agent_slug(self, subscription: EventSubscription) -> str | None:
        agent = getattr(subscription.participant, "agent", None)
        return agent.slug if agent is not None else None

    def get_secret_rotation_ends_at(self, subscription: EventSubscription) -> str | None:
        ends = subscription.previous_secret_retires_at
        return serializers.DateTimeField().to_representation(ends) if ends else None


class SubscriptionCreatedOutput(SubscriptionOutput):
    secret = serializers.SerializerMethodField(
        help_text="The signing secret (Standard Webhooks, whsec_...): shown only in this answer."
    )

    class Meta(SubscriptionOutput.Meta):
        fields = [*SubscriptionOutput.Meta.fields, "secret"]

    def get_secret(self, subscription: EventSubscription) -> str:
        return self.context["secret"]


class SubscriptionInput(serializers.Serializer):
    url = serializers.CharField(max_length=500, help_text="A public https (or http) URL.")
    event_types = serializers.ListField(child=serializers.ChoiceField(choices=EVENT_CHOICES))
    description = serializers.CharField(
        max_length=200, required=False, allow_blank=True, default=""
    )
    agent = serializers.SlugField(
        required=False,
        help_text="Subscribe this agent of yours instead of yourself (an agent's key: omit).",
    )


class SubscriptionChangeInput(serializers.Serializer):
    url = serializers.CharField(max_length=500, required=False)
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_CHOICES), required=False
    )
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)


class SecretOutput(serializers.Serializer):
    secret = serializers.CharField(help_text="The new signing secret, shown only here.")
    previous_valid_until = serializers.DateTimeField()


class EventTypeOutput(serializers.Serializer):
    type = serializers.CharField()
    description = serializers.CharField()


class EventDeliveryOutput(serializers.ModelSerializer):
    task_id = serializers.IntegerField(source="task_ref", allow_null=True)

    class Meta:
        model = EventDelivery
        fields = [
            "id",
            "event_id",
            "event_type",
            "task_id",
            "status",
            "attempts",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "attempt_log",
            "payload",
            "created_at",
            "delivered_at",
        ]


class _SubscriptionView(MarketView):
    read_scope = ApiKey.Scope.TASKS_READ
    write_scope = ApiKey.Scope.TASKS_WRITE

    def subscription(self, subscription_id: int) -> EventSubscription:
        return selectors.access_subscription(viewer=self.viewer, subscription_id=subscription_id)


def subscriber_for(viewer_participant: Participant, agent_slug: str | None) -> Participant:
    """Who a new subscription is for: the caller, or an agent the caller owns."""
    if not agent_slug:
        return viewer_participant
    agent = Agent.objects.select_related("participant").filter(slug=agent_slug).first()
    if agent is None or agent.owner_id != viewer_participant.pk:
        raise NotFound(f"Agent {agent_slug!r} does not exist or is not yours.")
    return agent.participant


class SubscriptionListView(_SubscriptionView):
    """Your subscriptions (and your agents'); POST subscribes a URL to events."""

    @extend_schema(responses=SubscriptionOutput(many=True))
    def get(self, request: Request) -> Response:
        return self.paginate(selectors.subscriptions_of(viewer=self.viewer), SubscriptionOutput)

    @extend_schema(request=SubscriptionInput, responses={201: SubscriptionCreatedOutput})
    def post(self, request: Request) -> Response:
        data = SubscriptionInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        subscription, secret = services.subscription_create(
            participant=subscriber_for(self.participant, values.get("agent")),
            url=values["url"],
            event_types=values["event_types"],
            description=values["description"],
        )
        subscription = self.subscription(subscription.pk)
        body = SubscriptionCreatedOutput(subscription, context={"secret": secret}).data
        response = Response(body, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response


class EventTypesOutput(serializers.Serializer):
    results = EventTypeOutput(many=True)


class EventTypesView(_SubscriptionView):
    """The events one can subscribe to (a short fixed list: not paged)."""

    pagination_class = None

    @extend_schema(responses=EventTypesOutput)
    def get(self, request: Request) -> Response:
        items = [{"type": name, "description": text} for name, text in events.EVENT_TYPES.items()]
        return Response({"results": items})


class SubscriptionDetailView(_SubscriptionView):
    @extend_schema(responses=SubscriptionOutput)
    def get(self, request: Request, subscription_id: int) -> Response:
        return Response(SubscriptionOutput(self.subscription(subscription_id)).data)

    @extend_schema(request=SubscriptionChangeInput, responses=SubscriptionOutput)
    def patch(self, request: Request, subscription_id: int) -> Response:
        subscription = self.subscription(subscription_id)
        data = SubscriptionChangeInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.subscription_update(subscription=subscription, **data.validated_data)
        return Response(SubscriptionOutput(self.subscription(subscription_id)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, subscription_id: int) -> Response:
        services.subscription_delete(subscription=self.subscription(subscription_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SubscriptionRotateView(_SubscriptionView):
    """A new signing secret; the previous one keeps signing beside it for a day."""

    @extend_schema(request=None, responses=SecretOutput)
    def post(self, request: Request, subscription_id: int) -> Response:
        subscription = self.subscription(subscription_id)
        secret = services.subscription_secret_rotate(subscription=subscription)
        subscription.refresh_from_db()
        body = {
            "secret": secret,
            "previous_valid_until": subscription.previous_secret_retires_at,
        }
        response = Response(SecretOutput(body).data)
        response["Cache-Control"] = "no-store"
        return response


class SubscriptionPauseView(_SubscriptionView):
    @extend_schema(request=None, responses=SubscriptionOutput)
    def post(self, request: Request, subscription_id: int) -> Response:
        services.subscription_pause(subscription=self.subscription(subscription_id))
        return Response(SubscriptionOutput(self.subscription(subscription_id)).data)


class SubscriptionResumeView(_SubscriptionView):
    """Active again; the deliveries that waited while it was paused go out now."""

    @extend_schema(request=None, responses=SubscriptionOutput)
    def post(self, request: Request, subscription_id: int) -> Response:
        services.subscription_resume(subscription=self.subscription(subscription_id))
        return Response(SubscriptionOutput(self.subscription(subscription_id)).data)


class SubscriptionPingView(_SubscriptionView):
    """Send a ``ping`` event to the endpoint now (see it in the delivery log)."""

    @extend_schema(request=None, responses={202: EventDeliveryOutput})
    def post(self, request: Request, subscription_id: int) -> Response:
        delivery = services.subscription_ping(subscription=self.subscription(subscription_id))
        return Response(EventDeliveryOutput(delivery).data, status=status.HTTP_202_ACCEPTED)


class SubscriptionDeliveriesView(_SubscriptionView):
    """The delivery log, newest first: every event sent, each attempt with its answer."""

    @extend_schema(responses=EventDeliveryOutput(many=True))
    def get(self, request: Request, subscription_id: int) -> Response:
        subscription = self.subscription(subscription_id)
        return self.paginate(
            selectors.subscription_deliveries(subscription=subscription), EventDeliveryOutput
        )


class DeliveryRetryView(_SubscriptionView):
    """Send a failed delivery again."""

    @extend_schema(request=None, responses=EventDeliveryOutput)
    def post(self, request: Request, subscription_id: int, delivery_id: int) -> Response:
        subscription = self.subscription(subscription_id)
        delivery = get_object_or_404(EventDelivery, pk=delivery_id, subscription=subscription)
        delivery = services.delivery_retry(delivery=delivery)
        return Response(EventDeliveryOutput(delivery).data)
