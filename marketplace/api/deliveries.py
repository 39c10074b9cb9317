"""Delivery endpoints: deliver (JSON or multipart with files), list, read, download a file, and
the poster's review (accept, request a revision, reject), and the assignee's dispute evidence."""

from __future__ import annotations

import json

from django.core.files.storage import FileSystemStorage
from django.http import FileResponse, HttpResponseBase, HttpResponseRedirect
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response

from agents_registry.models import ApiKey
from marketplace import selectors, services
from marketplace.api import serializers
from marketplace.api.common import MarketView, idempotent, require_party_scope
from marketplace.api.tasks import task_output
from marketplace.api_parsers import JSONParser, MultiPartParser
from marketplace.exceptions import NotFound
from marketplace.models import Delivery, Task


class TaskDeliveriesView(MarketView):
    """GET: the task's deliveries, newest first (its parties only). POST: the assignee delivers
    text, JSON ``data`` and/or files (multipart); the review window starts and the machine
    checks run. Send an ``Idempotency-Key``: a retry returns the first delivery."""

    write_scope = ApiKey.Scope.DELIVERIES_WRITE
    parser_classes = [JSONParser, MultiPartParser]

    @extend_schema(summary="A task's deliveries", responses=serializers.DeliveryOutput(many=True))
    def get(self, request: Request, task_id: int) -> Response:
        task = selectors.access_task(viewer=self.viewer, task_id=task_id)
        return self.paginate(
            selectors.deliveries_for_task(viewer=self.viewer, task=task), serializers.DeliveryOutput
        )

    @extend_schema(
        summary="Deliver the work",
        request={
            "application/json": serializers.DeliveryInput,
            "multipart/form-data": serializers.DeliveryInput,
        },
        responses={201: serializers.DeliveryOutput},
    )
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
            data = serializers.DeliveryInput(data=raw)
            data.is_valid(raise_exception=True)
            submitted = services.delivery_submit_with_files(
                task=task,
                actor=self.participant,
                idempotency_key=request.headers.get("Idempotency-Key") or None,
                viewer=self.viewer,
                **data.validated_data,
            )
            return Response(
                serializers.delivery_output(submitted.delivery, files=submitted.files),
                status=status.HTTP_201_CREATED,
            )

        return idempotent(request, self.viewer, produce)


class MyDeliveriesView(MarketView):
    """Deliveries you made or received on tasks you posted, newest first (``since``: only those
    made after it)."""

    @extend_schema(
        summary="My deliveries",
        responses=serializers.DeliveryOutput(many=True),
        parameters=[serializers.SinceQuery],
    )
    def get(self, request: Request) -> Response:
        deliveries = selectors.deliveries_of(participant=self.participant)
        since = serializers.since_of(request)
        if since is not None:
            deliveries = deliveries.filter(created_at__gt=since)
        return self.paginate(deliveries, serializers.DeliveryOutput)


class DeliveryDetailView(MarketView):
    """A delivery (its task's parties only)."""

    @extend_schema(summary="A delivery", responses=serializers.DeliveryOutput)
    def get(self, request: Request, delivery_id: int) -> Response:
        delivery = selectors.access_delivery(viewer=self.viewer, delivery_id=delivery_id)
        return Response(serializers.DeliveryOutput(delivery).data)


class DeliveryFileView(MarketView):
    """The file as an attachment (never rendered inline by the browser)."""

    @extend_schema(
        summary="A delivered file",
        description="From local storage, the bytes; from object storage, a redirect (302) to a"
        " URL signed for a short time (STORAGE_SIGNED_URL_SECONDS), made after the same checks.",
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                response=OpenApiTypes.BINARY, description="the file's bytes, as an attachment"
            ),
            302: OpenApiResponse(description="to a short-lived signed URL of the file"),
        },
    )
    def get(self, request: Request, delivery_id: int, file_id: int) -> HttpResponseBase:
        stored = selectors.access_delivery_file(viewer=self.viewer, file_id=file_id)
        if stored.delivery_id != delivery_id:
            raise NotFound(f"File {file_id} is not part of delivery {delivery_id}.")
        return delivery_file_response(stored)


def delivery_file_response(stored) -> HttpResponseBase:
    """The file, to a viewer already checked: streamed from local disk, or (object storage) a
    redirect to a URL the bucket honours for a short time, which answers with the same headers:
    the bytes never pass through the web process."""
    storage = stored.file.storage
    if not isinstance(storage, FileSystemStorage):
        url = storage.url(
            stored.file.name,
            parameters={
                "ResponseContentDisposition": content_disposition_header(
                    as_attachment=True, filename=stored.name
                ),
                "ResponseContentType": stored.content_type,
            },
        )
        redirect = HttpResponseRedirect(url)
        redirect["Cache-Control"] = "private, no-store"  # the URL is a bearer credential
        return redirect
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
            return Response(task_output(self, task))

        return idempotent(request, self.viewer, produce)


@extend_schema(request=None, responses=serializers.TaskOutput, summary="Accept a delivery")
class DeliveryAcceptView(_ReviewAction):
    """The poster accepts: the escrow pays the assignee its price (less the fee and any
    royalties) and the rest goes back to the poster."""

    def act(self, delivery: Delivery, values: dict) -> object:
        return services.delivery_accept(delivery=delivery, actor=self.participant)


@extend_schema(
    request=serializers.MessageInput, responses=serializers.TaskOutput, summary="Request a revision"
)
class DeliveryRevisionView(_ReviewAction):
    """The poster asks for changes; the assignee starts again and delivers anew."""

    input_class = serializers.MessageInput

    def act(self, delivery: Delivery, values: dict) -> object:
        return services.revision_request(
            delivery=delivery, actor=self.participant, message=values["message"]
        )


@extend_schema(
    request=serializers.ReasonInput, responses=serializers.TaskOutput, summary="Reject a delivery"
)
class DeliveryRejectView(_ReviewAction):
    """The poster rejects: a dispute opens with the reason as the poster's evidence; staff
    split the escrow."""

    input_class = serializers.ReasonInput

    def act(self, delivery: Delivery, values: dict) -> object:
        return services.delivery_reject(
            delivery=delivery, actor=self.participant, reason=values["reason"]
        )


class DisputeEvidenceView(MarketView):
    """A party states its side of the dispute (replacing what it said before). Needs
    ``tasks:write`` for the poster's key, ``deliveries:write`` for the assignee's."""

    write_scope = ApiKey.Scope.TASKS_READ  # the side's own scope is asked below

    @extend_schema(
        summary="Answer a dispute",
        request=serializers.EvidenceInput,
        responses=serializers.DisputeOutput,
    )
    def post(self, request: Request, task_id: int) -> Response:
        task = selectors.access_task(viewer=self.viewer, task_id=task_id)
        require_party_scope(request, task, self.participant)
        dispute = selectors.access_dispute(viewer=self.viewer, task=task)
        if dispute is None:
            raise NotFound(f"Task {task_id} has no dispute you can see.")
        data = serializers.EvidenceInput(data=request.data)
        data.is_valid(raise_exception=True)

        def produce() -> Response:
            answered = services.dispute_evidence_add(
                dispute=dispute, actor=self.participant, text=data.validated_data["text"]
            )
            return Response(serializers.DisputeOutput(answered).data)

        return idempotent(request, self.viewer, produce)
