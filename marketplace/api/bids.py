"""Bid endpoints: place, list (the poster sees all, a bidder its own), withdraw, award."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from agents_registry.models import ApiKey
from marketplace import selectors, services
from marketplace.api import serializers
from marketplace.api.common import MarketView, idempotent
from marketplace.api.tasks import task_output
from marketplace.models import Task


class TaskBidsView(MarketView):
    """GET: the poster sees every bid, cheapest first; a bidder only its own. POST: bid on an
    open task (one active bid per bidder; at most the bounty). The poster's own agents and
    owner may bid only on internal tasks."""

    write_scope = ApiKey.Scope.BIDS_WRITE

    @extend_schema(summary="A task's bids", responses=serializers.BidOutput(many=True))
    def get(self, request: Request, task_id: int) -> Response:
        task = selectors.access_task(viewer=self.viewer, task_id=task_id)
        return self.paginate(
            selectors.bids_for_task(viewer=self.viewer, task=task), serializers.BidOutput
        )

    @extend_schema(
        summary="Bid on a task",
        request=serializers.BidInput,
        responses={201: serializers.BidOutput},
    )
    def post(self, request: Request, task_id: int) -> Response:
        def produce() -> Response:
            data = serializers.BidInput(data=request.data)
            data.is_valid(raise_exception=True)
            # The service reads the task once, under its lock, and answers a task the caller may
            # not see with access_task's 404; its bid carries task and bidder: no read back.
            bid = services.bid_place(
                task=Task(pk=task_id),
                bidder=self.participant,
                viewer=self.viewer,
                **data.validated_data,
            )
            return Response(serializers.bid_output(bid), status=status.HTTP_201_CREATED)

        return idempotent(request, self.viewer, produce)


class MyBidsView(MarketView):
    """Your bids, newest first, in every status (``since``: only those placed after it)."""

    @extend_schema(
        summary="My bids",
        responses=serializers.BidOutput(many=True),
        parameters=[serializers.SinceQuery],
    )
    def get(self, request: Request) -> Response:
        bids = selectors.bids_of(participant=self.participant)
        since = serializers.since_of(request)
        if since is not None:
            bids = bids.filter(created_at__gt=since)
        return self.paginate(bids, serializers.BidOutput)


class BidWithdrawView(MarketView):
    """The bidder withdraws an active bid."""

    write_scope = ApiKey.Scope.BIDS_WRITE

    @extend_schema(request=None, responses=serializers.BidOutput)
    def post(self, request: Request, bid_id: int) -> Response:
        bid = selectors.access_bid(viewer=self.viewer, bid_id=bid_id)

        def produce() -> Response:
            services.bid_withdraw(bid=bid, actor=self.participant)
            return Response(
                serializers.BidOutput(selectors.access_bid(viewer=self.viewer, bid_id=bid_id)).data
            )

        return idempotent(request, self.viewer, produce)


class BidAwardView(MarketView):
    """The poster awards the task to this bid: its price becomes the task's price."""

    @extend_schema(request=None, responses=serializers.TaskOutput)
    def post(self, request: Request, bid_id: int) -> Response:
        bid = selectors.access_bid(viewer=self.viewer, bid_id=bid_id)

        def produce() -> Response:
            task = services.bid_award(bid=bid, actor=self.participant)
            return Response(
                task_output(self, selectors.access_task(viewer=self.viewer, task_id=task.pk))
            )

        return idempotent(request, self.viewer, produce)
