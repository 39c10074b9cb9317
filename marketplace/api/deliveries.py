"""Delivery endpoints: deliver (JSON or multipart with files), list, read, download a file, and
the poster's review (accept, request a revision, reject), and the assignee's dispute evidence."""

from __future__ import annotations

import json

from django.http import FileResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from agents_registry.models import ApiKey
from marketplace import selectors, services
from marketplace.api import serializers as s
from marketplace.api.common import MarketView, idempotent
from marketplace.exceptions import NotFound
from marketplace.models import Delivery, Task


class TaskDeliveriesView(MarketView):
    write_scope = ApiKey.Scope.DELIVERIES_WRITE
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(responses=s.DeliveryOutput(many=True))
    def get(self, request: Request, task_id: int) -> Response:
        task = selectors.access_task(viewer=self.viewer, task_id=task_id)
        return self.paginate(
            selectors.deliveries_for_task(viewer=self.viewer, task=task), s.DeliveryOutput
        )

    @extend_schema(request=s.DeliveryInput, responses={201: s.DeliveryOutput})
    def post(self, request: Request, task_id: int) -> Response:
        # The service reads the task once, under its lock (a task the caller may not see: 404).
        task = Task(pk=task_id)

        def produce() -> Response:
            raw = request.data
            if hasattr(raw, "getlist"):
                raw = {
                    key: raw.getlist(key) if key in ("files", "skills_used") else raw.get(key)
                    for key in raw
                }
                raw["files"] = request.FILES.getlist("files")
                if isinstance(raw.get("data"), str) and raw["data"].strip():
                    # In a multipart form, ``data`` travels as a JSON-encoded string.
                    try:
                        raw["data"] = json.loads(raw["data"])
                    except ValueError:
                        raise exceptions.ValidationError(
                            {"data": ["Must be valid JSON in a multipart request."]}
                        ) from None
            data = s.DeliveryInput(data=raw)
            data.is_valid(raise_exception=True)
            delivery = services.delivery_submit(
                task=task,
                actor=self.participant,
                idempotency_key=request.headers.get("Idempotency-Key") or None,
                viewer=self.viewer,
                **data.validated_data,
            )
            return Response(s.delivery_output(delivery), status=status.HTTP_201_CREATED)

        return idempotent(request, self.viewer, produce)


class MyDeliveriesView(MarketView):
    @extend_schema(responses=s.DeliveryOutput(many=True))
    def get(self, request: Request) -> Response:
        return self.paginate(
            selectors.deliveries_of(participant=self.participant), s.DeliveryOutput
        )


class DeliveryDetailView(MarketView):
    @extend_schema(responses=s.DeliveryOutput)
    def get(self, request: Request, delivery_id: int) -> Response:
        delivery = selectors.access_delivery(viewer=self.viewer, delivery_id=delivery_id)
        return Response(s.DeliveryOutput(delivery).data)


class DeliveryFileView(MarketView):
    """The file as an attachment (never rendered inline by the browser)."""

    @extend_schema(responses={200: OpenApiResponse(description="the file's bytes")})
    def get(self, request: Request, delivery_id: int, file_id: int) -> FileResponse:
        stored = selectors.access_delivery_file(viewer=self.viewer, file_id=file_id)
        if stored.delivery_id != delivery_id:
            raise NotFound(f"File {file_id} is not part of delivery {delivery_id}.")
        return delivery_file_response(stored)


def delivery_file_response(stored) -> FileResponse:
    response = FileResponse(
        stored.file.open("rb"),
        as_attachment=True,
        filename=stored.name,
        content_type=stored.content_type,
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


class _ReviewAction(MarketView):
    input_class: type | None = None

    def act(self, delivery: Delivery, values: dict) -> object:
        raise NotImplementedError

    def post(self, request: Request, delivery_id: int) -> Response:
        delivery = selectors.access_delivery(viewer=self.viewer, delivery_id=delivery_id)

        def produce() -> Response:
            values = {}
            if self.input_class is not None:
                data = self.input_class(data=request.data)
                data.is_valid(raise_exception=True)
                values = data.validated_data
            self.act(delivery, values)
            task = selectors.access_task(viewer=self.viewer, task_id=delivery.task_id)
            return Response(s.TaskOutput(task).data)

        return idempotent(request, self.viewer, produce)


@extend_schema(request=None, responses=s.TaskOutput)
class DeliveryAcceptView(_ReviewAction):
    def act(self, delivery: Delivery, values: dict) -> object:
        return services.delivery_accept(delivery=delivery, actor=self.participant)


@extend_schema(request=s.MessageInput, responses=s.TaskOutput)
class DeliveryRevisionView(_ReviewAction):
    input_class = s.MessageInput

    def act(self, delivery: Delivery, values: dict) -> object:
        return services.revision_request(
            delivery=delivery, actor=self.participant, message=values["message"]
        )


@extend_schema(request=s.ReasonInput, responses=s.TaskOutput)
class DeliveryRejectView(_ReviewAction):
    input_class = s.ReasonInput

    def act(self, delivery: Delivery, values: dict) -> object:
        return services.delivery_reject(
            delivery=delivery, actor=self.participant, reason=values["reason"]
        )


class DisputeEvidenceView(MarketView):
    write_scope = ApiKey.Scope.DELIVERIES_WRITE

    @extend_schema(request=s.EvidenceInput, responses=None)
    def post(self, request: Request, task_id: int) -> Response:
        task = selectors.access_task(viewer=self.viewer, task_id=task_id)
        dispute = selectors.access_dispute(viewer=self.viewer, task=task)
        if dispute is None:
            raise NotFound(f"Task {task_id} has no dispute you can see.")
        data = s.EvidenceInput(data=request.data)
        data.is_valid(raise_exception=True)
        dispute = services.dispute_evidence_add(
            dispute=dispute, actor=self.participant, text=data.validated_data["text"]
        )
        return Response({"dispute": dispute.pk, "status": dispute.status})
