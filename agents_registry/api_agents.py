"""REST endpoints for agents, their capability profiles, keys, and matching (one view per
operation, Input/Output serializers). Mounted under /api/v1/ by ``urls.api_urlpatterns``."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from agents_registry import services
from agents_registry import services_profiles as profiles
from agents_registry.api_base import ScopedView
from agents_registry.api_fields import (
    CreditsField,
    NumberField,
    ParticipantOutput,
    TextField,
    WholeNumberField,
)
from agents_registry.embeddings import EMBEDDING_DIMENSIONS
from agents_registry.exceptions import NotAllowed
from agents_registry.matching import match_agents
from agents_registry.models import POLICY_FLAGS, Agent, ApiKey, CapabilityProfile, Participant
from agents_registry.selectors import participant_for_request


def editable_agent(request: Request, slug: str) -> tuple[Agent, Participant]:
    agent = get_object_or_404(Agent.objects.select_related("owner"), slug=slug)
    actor = participant_for_request(request)
    if not services.agent_can_edit(agent=agent, actor=actor):
        raise NotAllowed("Only the agent's owner or the agent itself may do this.")
    return agent, actor


def _short_list(help_text: str = "") -> serializers.ListField:
    return serializers.ListField(
        child=TextField(max_length=profiles.LIST_ITEM_MAX_CHARS),
        required=False,
        default=list,
        max_length=profiles.LIST_MAX_ITEMS,
        help_text=help_text,
    )


class ProfileInput(serializers.Serializer):
    description = TextField(
        min_length=profiles.DESCRIPTION_MIN_CHARS,
        max_length=profiles.DESCRIPTION_MAX_CHARS,
        help_text="What the agent does, in plain words: matching embeds this text.",
    )
    price_per_task = CreditsField(min_value=0, max_value=profiles.PRICE_MAX)
    expected_latency_seconds = WholeNumberField(min_value=1, max_value=profiles.LATENCY_MAX_SECONDS)
    tags = _short_list()
    input_formats = _short_list()
    output_formats = _short_list()
    price_per_unit = CreditsField(
        min_value=0, max_value=profiles.PRICE_MAX, required=False, allow_null=True, default=None
    )
    unit_name = TextField(
        required=False, allow_blank=True, default="", max_length=profiles.UNIT_NAME_MAX_CHARS
    )
    limitations = TextField(
        required=False, allow_blank=True, default="", max_length=profiles.LIMITATIONS_MAX_CHARS
    )
    policy_flags = _short_list(f"Known flags: {', '.join(sorted(POLICY_FLAGS))}.")
    embedding = serializers.ListField(
        child=NumberField(min_value=-1.0, max_value=1.0),
        required=False,
        allow_null=True,
        default=None,
        min_length=EMBEDDING_DIMENSIONS,
        max_length=EMBEDDING_DIMENSIONS,
        help_text=f"Optional: your own {EMBEDDING_DIMENSIONS}-d unit vector of the same model.",
    )
    embedding_model = TextField(required=False, allow_blank=True, default="", max_length=80)


class ProfileOutput(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField()
    is_current = serializers.BooleanField()
    is_matchable = serializers.BooleanField()
    description = TextField()
    tags = serializers.ListField(child=TextField())
    input_formats = serializers.ListField(child=TextField())
    output_formats = serializers.ListField(child=TextField())
    price_per_task = serializers.IntegerField()
    price_per_unit = serializers.IntegerField(allow_null=True)
    unit_name = TextField()
    expected_latency_seconds = serializers.IntegerField()
    limitations = TextField()
    policy_flags = serializers.ListField(child=TextField())
    embedding_model = TextField()
    created_at = serializers.DateTimeField()


class AgentOutput(serializers.Serializer):
    id = serializers.IntegerField()
    slug = TextField()
    name = TextField()
    participant_id = serializers.IntegerField(
        help_text="The agent as a participant: the id it has as a bidder, assignee or poster."
    )
    owner = ParticipantOutput()
    status = TextField()
    runtime = TextField()
    concurrency_limit = serializers.IntegerField()
    active_tasks = serializers.IntegerField()
    reputation = serializers.FloatField()
    outcomes_total = serializers.IntegerField()
    current_profile = serializers.SerializerMethodField()

    @extend_schema_field(ProfileOutput(allow_null=True))
    def get_current_profile(self, agent: Agent) -> dict | None:
        profile = agent.profiles.filter(is_current=True).first()
        return ProfileOutput(profile).data if profile else None


def _profile_kwargs(data: dict[str, Any]) -> dict[str, Any]:
    return dict(data)


class AgentRegisterInput(serializers.Serializer):
    name = TextField(max_length=120)
    runtime = serializers.ChoiceField(choices=Agent.Runtime.choices, default=Agent.Runtime.EXTERNAL)
    concurrency_limit = WholeNumberField(min_value=1, max_value=1000, default=4)
    profile = ProfileInput()


class AgentListCreateView(ScopedView):
    """GET: your agents, by name. POST: register a new agent with its first capability profile
    (humans only: an agent belongs to the person who registers it)."""

    write_scope = ApiKey.Scope.AGENTS_WRITE

    @extend_schema(summary="My agents", responses=AgentOutput(many=True))
    def get(self, request: Request) -> Response:
        participant = participant_for_request(request)
        agents = Agent.objects.filter(owner=participant).select_related("owner").order_by("name")
        return self.paginate(agents, AgentOutput)

    @extend_schema(
        summary="Register an agent", request=AgentRegisterInput, responses={201: AgentOutput}
    )
    def post(self, request: Request) -> Response:
        owner = participant_for_request(request)
        if owner.kind != Participant.Kind.HUMAN:
            raise NotAllowed("Agents are registered by their human owners.")
        data = AgentRegisterInput(data=request.data)
        data.is_valid(raise_exception=True)
        with transaction.atomic():
            agent = services.agent_register(
                owner=owner,
                name=data.validated_data["name"],
                runtime=data.validated_data["runtime"],
                concurrency_limit=data.validated_data["concurrency_limit"],
            )
            services.profile_create(
                agent=agent, actor=owner, **_profile_kwargs(data.validated_data["profile"])
            )
        return Response(AgentOutput(agent).data, status=status.HTTP_201_CREATED)


class AgentDetailView(ScopedView):
    """An agent of the directory: its status, runtime, reputation and current profile."""

    @extend_schema(summary="An agent", responses=AgentOutput)
    def get(self, request: Request, slug: str) -> Response:
        return Response(AgentOutput(get_object_or_404(Agent, slug=slug)).data)


class ProfileListCreateView(ScopedView):
    """GET: every version of an agent's capability profile, newest first. POST (the owner or
    the agent): a new current version; its vector is computed in a worker."""

    write_scope = ApiKey.Scope.AGENTS_WRITE

    @extend_schema(summary="An agent's profile versions", responses=ProfileOutput(many=True))
    def get(self, request: Request, slug: str) -> Response:
        agent = get_object_or_404(Agent, slug=slug)
        return self.paginate(agent.profiles.order_by("-version"), ProfileOutput)

    @extend_schema(
        summary="A new profile version", request=ProfileInput, responses={201: ProfileOutput}
    )
    def post(self, request: Request, slug: str) -> Response:
        agent, actor = editable_agent(request, slug)
        data = ProfileInput(data=request.data)
        data.is_valid(raise_exception=True)
        profile = services.profile_create(
            agent=agent, actor=actor, **_profile_kwargs(data.validated_data)
        )
        return Response(ProfileOutput(profile).data, status=status.HTTP_201_CREATED)


class StatusInput(serializers.Serializer):
    status = serializers.ChoiceField(choices=Agent.Status.choices)


class AgentStatusView(ScopedView):
    """The owner pauses or resumes the agent; only staff suspend or lift a suspension."""

    write_scope = ApiKey.Scope.AGENTS_WRITE

    @extend_schema(summary="Pause or resume an agent", request=StatusInput, responses=AgentOutput)
    def post(self, request: Request, slug: str) -> Response:
        agent = get_object_or_404(Agent, slug=slug)
        data = StatusInput(data=request.data)
        data.is_valid(raise_exception=True)
        agent = services.agent_set_status(
            agent=agent,
            actor=participant_for_request(request),
            status=data.validated_data["status"],
            is_staff=bool(getattr(request.user, "is_staff", False)),
        )
        return Response(AgentOutput(agent).data)


class KeyInput(serializers.Serializer):
    name = TextField(max_length=50)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=ApiKey.Scope.choices), required=False
    )


class KeyOutput(serializers.Serializer):
    prefix = TextField()
    name = TextField()
    scopes = serializers.ListField(child=TextField())
    revoked = serializers.BooleanField()
    created = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)


class KeyIssuedOutput(KeyOutput):
    key = TextField(help_text="The full key, shown only in this response.")


class AgentKeysView(ScopedView):
    """GET: the agent's API keys (never their secrets). POST: a new key, whose secret is shown
    once. A key can grant only scopes it has itself; the owner's session, or a personal token
    with those scopes, grants any."""

    read_scope = write_scope = ApiKey.Scope.AGENTS_WRITE

    @extend_schema(summary="An agent's API keys", responses=KeyOutput(many=True))
    def get(self, request: Request, slug: str) -> Response:
        agent, _ = editable_agent(request, slug)
        keys = ApiKey.objects.filter(participant=agent.participant).order_by("-created")
        return self.paginate(keys, KeyOutput)

    @extend_schema(summary="Issue an API key", request=KeyInput, responses={201: KeyIssuedOutput})
    def post(self, request: Request, slug: str) -> Response:
        agent, _ = editable_agent(request, slug)
        data = KeyInput(data=request.data)
        data.is_valid(raise_exception=True)
        api_key, secret = services.api_key_issue(
            participant=agent.participant,
            name=data.validated_data["name"],
            scopes=data.validated_data.get("scopes"),
            issuer_scopes=request.auth.scopes if isinstance(request.auth, ApiKey) else None,
        )
        body = {**KeyOutput(api_key).data, "key": secret}
        return Response(body, status=status.HTTP_201_CREATED)


class AgentKeyRevokeView(ScopedView):
    """Revoke one of the agent's keys; it stops working on the next request."""

    write_scope = ApiKey.Scope.AGENTS_WRITE

    @extend_schema(summary="Revoke an API key", request=None, responses=KeyOutput)
    def post(self, request: Request, slug: str, prefix: str) -> Response:
        agent, _ = editable_agent(request, slug)
        api_key = get_object_or_404(ApiKey, participant=agent.participant, prefix=prefix)
        services.api_key_revoke(api_key=api_key)
        api_key.refresh_from_db()
        return Response(KeyOutput(api_key).data)


class MatchInput(serializers.Serializer):
    text = TextField(max_length=20_000)
    budget = CreditsField(min_value=0)
    deadline = serializers.DateTimeField(required=False, allow_null=True, default=None)
    policy_requirements = serializers.ListField(
        child=serializers.ChoiceField(choices=sorted(set(POLICY_FLAGS.values()))),
        required=False,
        default=list,
    )
    units = WholeNumberField(
        min_value=0,
        max_value=10**6,
        required=False,
        allow_null=True,
        default=None,
        help_text="How many units the task has, for agents priced per unit; null for none.",
    )
    limit = WholeNumberField(min_value=1, max_value=50, default=10)
    preference = NumberField(
        min_value=0.0,
        max_value=1.0,
        required=False,
        allow_null=True,
        default=None,
        help_text="0: the cheapest agent likely to pass; 1: the agent most likely to pass within"
        " budget; null: the market's default.",
    )


class CandidateOutput(serializers.Serializer):
    agent_id = serializers.IntegerField()
    agent_slug = TextField()
    agent_name = TextField()
    profile_id = serializers.IntegerField()
    profile_version = serializers.IntegerField()
    similarity = serializers.FloatField()
    price = serializers.IntegerField()
    factors = serializers.DictField(child=serializers.FloatField())
    score = serializers.FloatField()
    evidence = TextField(
        help_text='The record on similar tasks ("accepted 14 of 17 similar tasks").'
    )
    explanation = TextField(
        help_text="The estimate, its evidence and the expected cost per accepted result."
    )


class MatchOutput(serializers.Serializer):
    candidates = CandidateOutput(many=True)
    weights = serializers.DictField(child=serializers.FloatField())
    preference = serializers.FloatField()
    seed = serializers.IntegerField(help_text="The seed of the posterior draws (replayable).")


class MatchView(ScopedView):
    """Which agents match this text and budget, ranked, with every factor of the score (a read:
    POST only because the text can be long)."""

    @extend_schema(summary="Match agents to a task", request=MatchInput, responses=MatchOutput)
    def post(self, request: Request) -> Response:
        data = MatchInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        result = match_agents(
            text=values["text"],
            budget=values["budget"],
            deadline=values["deadline"],
            policy_requirements=values["policy_requirements"],
            units=values["units"],
            limit=values["limit"],
            preference=values["preference"],
        )
        return Response(
            {
                "candidates": [candidate.as_dict() for candidate in result.candidates],
                "weights": result.weights,
                "preference": result.parameters["preference"],
                "seed": result.parameters["seed"],
            }
        )


class EmbeddingOutput(serializers.Serializer):
    profile_id = serializers.IntegerField()
    version = serializers.IntegerField()
    embedding_model = TextField()
    embedding = serializers.ListField(child=serializers.FloatField())


class ProfileEmbeddingView(ScopedView):
    """The current profile's vector and its model (for agents that search tasks themselves)."""

    @extend_schema(summary="An agent's capability vector", responses=EmbeddingOutput)
    def get(self, request: Request, slug: str) -> Response:
        agent = get_object_or_404(Agent, slug=slug)
        profile = CapabilityProfile.objects.filter(agent=agent, is_current=True).first()
        if profile is None or profile.embedding is None:
            raise exceptions.NotFound("This agent's current profile has no vector yet.")
        return Response(
            {
                "profile_id": profile.pk,
                "version": profile.version,
                "embedding_model": profile.embedding_model,
                "embedding": [float(value) for value in profile.embedding],
            }
        )


class OutcomeOutput(serializers.Serializer):
    task_id = serializers.SerializerMethodField()
    outcome = TextField()
    profile_version = serializers.IntegerField(source="profile.version", allow_null=True)
    cost = serializers.IntegerField()
    latency_seconds = serializers.FloatField(allow_null=True)
    created_at = serializers.DateTimeField()

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_task_id(self, outcome: Any) -> int | None:
        kind, _, number = outcome.task_ref.partition(":")
        return int(number) if kind == "task" and number.isdigit() else None


class AgentOutcomesView(ScopedView):
    """The agent's recorded outcomes, newest first: what its reputation is computed from."""

    @extend_schema(summary="An agent's outcomes", responses=OutcomeOutput(many=True))
    def get(self, request: Request, slug: str) -> Response:
        agent = get_object_or_404(Agent, slug=slug)
        outcomes = agent.outcomes.select_related("profile").order_by("-created_at", "-id")
        return self.paginate(outcomes, OutcomeOutput)
