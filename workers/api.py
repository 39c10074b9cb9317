"""REST API of the workers app: an execution's status, its trace (export and live appends)."""

from __future__ import annotations

import json

from django.http import JsonResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from agents_registry.api_base import ScopedView
from agents_registry.api_fields import IdField, TextField, query_of
from agents_registry.models import ApiKey
from marketplace import selectors as market_selectors
from workers import selectors, services
from workers.exceptions import TraceAccessDenied
from workers.models import Execution, TraceEvent
from workers.services.traces import MAX_EVENT_JSON_BYTES


class ExecutionOutput(serializers.ModelSerializer):
    task_id = serializers.IntegerField(source="task_ref")
    agent_slug = TextField(source="agent.slug")
    delivery_id = serializers.IntegerField(source="delivery_ref", allow_null=True)

    class Meta:
        model = Execution
        fields = [
            "id",
            "task_id",
            "agent_slug",
            "status",
            "attempts",
            "max_attempts",
            "budget",
            "cost",
            "input_tokens",
            "output_tokens",
            "delivery_id",
            "error_code",
            "error_message",
            "trace_length",
            "created_at",
            "started_at",
            "finished_at",
        ]


class ExecutionQuery(serializers.Serializer):
    task = IdField(required=False, help_text="only the executions of this task")
    status = serializers.ChoiceField(choices=Execution.Status.choices, required=False)


class ExecutionListView(ScopedView):
    """The executions of your agents (an agent's key: its own), newest first."""

    @extend_schema(
        summary="My executions", parameters=[ExecutionQuery], responses=ExecutionOutput(many=True)
    )
    def get(self, request: Request) -> Response:
        given = ExecutionQuery(data=query_of(request))
        given.is_valid(raise_exception=True)
        executions = selectors.executions_of(
            viewer=market_selectors.viewer_for_request(request),
            task_id=given.validated_data.get("task"),
            status=given.validated_data.get("status", ""),
        )
        return self.paginate(executions, ExecutionOutput)


class ExecutionDetailView(ScopedView):
    """An execution: status, attempts, cost, error. Visible to its agent (and the agent's
    owner), the task's poster and staff."""

    @extend_schema(summary="An execution", responses=ExecutionOutput)
    def get(self, request: Request, execution_id: int) -> Response:
        viewer = market_selectors.viewer_for_request(request)
        execution, _ = selectors.access_execution(viewer=viewer, execution_id=execution_id)
        return Response(ExecutionOutput(execution).data)


class TraceExportView(ScopedView):
    """The trace as JSON (schema: /api/v1/traces/schema/v1.json); ``?download=1`` as a file."""

    @extend_schema(
        summary="An execution's trace",
        parameters=[
            OpenApiParameter("download", OpenApiTypes.BOOL, description="as an attachment")
        ],
        responses=OpenApiResponse(
            response=OpenApiTypes.OBJECT, description="A trace export, schema version 1.0"
        ),
    )
    def get(self, request: Request, execution_id: int) -> Response:
        viewer = market_selectors.viewer_for_request(request)
        execution, task = selectors.access_execution(viewer=viewer, execution_id=execution_id)
        response = Response(selectors.trace_export(execution=execution, task=task))
        if request.query_params.get("download"):
            filename = f"trace-execution-{execution.pk}.json"
            response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


class TraceEventInput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=TraceEvent.Kind.choices)
    name = TextField(max_length=200, required=False, allow_blank=True, default="")
    inputs = serializers.JSONField(required=False, allow_null=True, default=None)
    outputs = serializers.JSONField(required=False, allow_null=True, default=None)
    input_tokens = serializers.IntegerField(min_value=0, max_value=10**9, default=0)
    output_tokens = serializers.IntegerField(min_value=0, max_value=10**9, default=0)
    cost = serializers.IntegerField(min_value=0, max_value=10**12, default=0)
    duration_ms = serializers.IntegerField(min_value=0, max_value=86_400_000, default=0)
    started_at = serializers.DateTimeField(required=False, allow_null=True, default=None)

    def _small(self, value: object) -> object:
        if value is not None and len(json.dumps(value)) > MAX_EVENT_JSON_BYTES:
            raise serializers.ValidationError(
                f"At most {MAX_EVENT_JSON_BYTES} bytes of JSON; store large artefacts elsewhere."
            )
        return value

    validate_inputs = _small
    validate_outputs = _small


class TraceEventOutput(serializers.ModelSerializer):
    class Meta:
        model = TraceEvent
        fields = ["sequence", "attempt", "kind", "source", "name", "started_at", "duration_ms"]


class TraceEventAppendView(ScopedView):
    """The executing agent appends an event to its trace while it works (an agent key)."""

    write_scope = ApiKey.Scope.TRACES_WRITE

    @extend_schema(
        summary="Add to an execution's trace",
        request=TraceEventInput,
        responses={201: TraceEventOutput},
    )
    def post(self, request: Request, execution_id: int) -> Response:
        viewer = market_selectors.viewer_for_request(request)
        execution, _ = selectors.access_execution(viewer=viewer, execution_id=execution_id)
        if viewer.participant is None or viewer.participant.pk != execution.agent.participant_id:
            raise TraceAccessDenied("Only the agent running this execution can add to its trace.")
        api_key = request.auth
        if not isinstance(api_key, ApiKey) or not api_key.has_scope(ApiKey.Scope.TRACES_WRITE):
            raise TraceAccessDenied("This needs an agent API key with the traces:write scope.")
        payload = TraceEventInput(data=request.data)
        payload.is_valid(raise_exception=True)
        event = services.trace_event_append(
            execution_id=execution.pk,
            source=TraceEvent.Source.AGENT,
            require_active=True,
            **payload.validated_data,
        )
        return Response(TraceEventOutput(event).data, status=status.HTTP_201_CREATED)


class TraceSchemaView(ScopedView):
    """The JSON Schema of trace exports, version 1."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(
        summary="The trace export's JSON Schema",
        auth=[],
        responses=OpenApiResponse(
            response=OpenApiTypes.OBJECT, description="JSON Schema (draft 2020-12)"
        ),
    )
    def get(self, request: Request) -> JsonResponse:
        return JsonResponse(selectors.trace_schema())
