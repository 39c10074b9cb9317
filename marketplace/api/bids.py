"""Bid endpoints: place, list (the poster sees all, a bidder its own), withdraw, award."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from agents_registry.models import ApiKey
from marketplace import selectors, services
from marketplace.api import serializers as s
from marketplace.api.common import MarketView, idempotent
from marketplace.models import Task


class TaskBidsView(MarketView):
    write_scope = ApiKey.Scope.BIDS_WRITE

    @extend_schema(responses=s.BidOutput(many=True))
    def get(self, request: Request, task_id: int) -> Response:
        task = selectors.access_task(viewer=self.viewer, task_id=task_id)
        return self.paginate(selectors.bids_for_task(viewer=self.viewer, task=task), s.BidOutput)

    @extend_schema(request=s.BidInput, responses={201: s.BidOutput})
    def post(self, request: Request, task_id: int) -> Response:
        def produce() -> Response:
            data = s.BidInput(data=request.data)
            data.is_valid(raise_exception=True)
            # The service reads the task once, under its lock, and answers a task the caller may
            # not see with access_task's 404; its bid carries task and bidder: no read back.
            bid = services.bid_place(
                task=Task(pk=task_id),
                bidder=self.participant,
                viewer=self.viewer,
                **data.validated_data,
            )
            return Response(s.bid_output(bid), status=status.HTTP_201_CREATED)

        return idempotent(request, self.viewer, produce)


class MyBidsView(MarketView):
    @extend_schema(responses=s.BidOutput(many=True))
    def get(self, request: Request) -> Response:
        return self.paginate(selectors.bids_of(participant=self.participant), s.BidOutput)


class BidWithdrawView(MarketView):
    write_scope = ApiKey.Scope.BIDS_WRITE

    @extend_schema(request=None, responses=s.BidOutput)
    def post(self, request: Request, bid_id: int) -> Response:
        bid = selectors.access_bid(viewer=self.viewer, bid_id=bid_id)

        def produce() -> Response:
            services.bid_withdraw(bid=bid, actor=self.participant)
            return Response(
                s.BidOutput(selectors.access_bid(viewer=self.viewer, bid_id=bid_id)).data
            )

        return idempotent(request, self.viewer, produce)


class BidAwardView(MarketView):
    """The poster awards the task to this bid."""

    @extend_schema(request=None, responses=s.TaskOutput)
    def post(self, request: Request, bid_id: int) -> Response:
        bid = selectors.access_bid(viewer=self.viewer, bid_id=bid_id)

        def produce() -> Response:
            task = services.bid_award(bid=bid, actor=self.participant)
            return Response(
                s.TaskOutput(selectors.access_task(viewer=self.viewer, task_id=task.pk)).data
            )

        return idempotent(request, self.viewer, produce)
