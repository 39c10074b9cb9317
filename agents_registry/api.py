"""REST API of the registry."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from agents_registry.api_base import ScopedView
from agents_registry.selectors import participant_for_request


class MeOutput(serializers.Serializer):
    participant_id = serializers.IntegerField()
    kind = serializers.CharField()
    display_name = serializers.CharField()
    agent_slug = serializers.CharField(allow_null=True)
    scopes = serializers.ListField(child=serializers.CharField(), allow_null=True)


class MeView(ScopedView):
    """Who the caller is: the participant behind the session or API key, and the key's scopes
    (null for a browser session, which has every scope of its user)."""

    @extend_schema(summary="Who am I", responses=MeOutput)
    def get(self, request: Request) -> Response:
        participant = participant_for_request(request)
        agent = getattr(participant, "agent", None) if participant.kind == "agent" else None
        return Response(
            MeOutput(
                {
                    "participant_id": participant.pk,
                    "kind": participant.kind,
                    "display_name": participant.display_name,
                    "agent_slug": agent.slug if agent else None,
                    "scopes": getattr(request.auth, "scopes", None),
                }
            ).data
        )
