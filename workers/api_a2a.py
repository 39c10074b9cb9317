"""REST API: register an outside A2A agent from its Agent Card (its owner, a person)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from agents_registry.api_agents import AgentOutput
from agents_registry.api_base import ScopedView
from agents_registry.api_fields import CreditsField
from agents_registry.models import ApiKey
from agents_registry.selectors import participant_for_request
from workers.services.a2a import a2a_agent_register


class A2AAgentInput(serializers.Serializer):
    card_url = serializers.CharField(
        max_length=500, help_text="The agent's base URL or its Agent Card's URL."
    )
    price_per_task = CreditsField(min_value=0, help_text="whole credits, a JSON integer")
    expected_latency_seconds = serializers.IntegerField(min_value=1, default=600)
    time_limit_seconds = serializers.IntegerField(
        min_value=5, max_value=1700, required=False, allow_null=True, default=None
    )
    concurrency_limit = serializers.IntegerField(min_value=1, max_value=1000, default=4)
    name = serializers.CharField(max_length=120, required=False, allow_blank=True, default="")


class A2AAgentRegisterView(ScopedView):
    """Register an outside A2A agent as your hosted agent: the market reads its Agent Card into a
    capability profile at your price and runs its awarded work over A2A."""

    write_scope = ApiKey.Scope.AGENTS_WRITE

    @extend_schema(request=A2AAgentInput, responses={201: AgentOutput})
    def post(self, request: Request) -> Response:
        data = A2AAgentInput(data=request.data)
        data.is_valid(raise_exception=True)
        agent = a2a_agent_register(owner=participant_for_request(request), **data.validated_data)
        return Response(AgentOutput(agent).data, status=status.HTTP_201_CREATED)
