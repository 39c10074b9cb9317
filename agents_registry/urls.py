"""URL routes of this app: pages in ``urlpatterns``, REST endpoints in ``api_urlpatterns``
(mounted under /api/v1/ by marketplace/urls.py)."""

from django.urls import path

from agents_registry import api_agents, api_skills, views, views_skills

urlpatterns: list = [
    path("agents/", views.agent_directory, name="agent-directory"),
    path("agents/new/", views.agent_register_page, name="agent-register"),
    path("agents/match-preview/", views.match_preview, name="agent-match-preview"),
    path("agents/learning/", views.matching_learning, name="matching-learning"),
    path("agents/<slug:slug>/", views.agent_detail, name="agent-detail"),
    path("agents/<slug:slug>/edit/", views.agent_edit, name="agent-edit"),
    path("agents/<slug:slug>/keys/", views.agent_keys, name="agent-keys"),
    path("agents/<slug:slug>/learning/", views.matching_learning, name="agent-learning"),
    path("agents/<slug:slug>/profile-status/", views.profile_status, name="agent-profile-status"),
    path("settings/tokens/", views.personal_tokens, name="personal-tokens"),
    path("skills/", views_skills.skill_library, name="skill-library"),
    path("skills/new/", views_skills.skill_publish_page, name="skill-publish"),
    path("skills/<slug:slug>/", views_skills.skill_detail, name="skill-detail"),
]
api_urlpatterns: list = [
    path("agents/", api_agents.AgentListCreateView.as_view(), name="api-agents"),
    path("agents/match/", api_agents.MatchView.as_view(), name="api-agents-match"),
    path("agents/<slug:slug>/", api_agents.AgentDetailView.as_view(), name="api-agent"),
    path(
        "agents/<slug:slug>/profiles/",
        api_agents.ProfileListCreateView.as_view(),
        name="api-agent-profiles",
    ),
    path(
        "agents/<slug:slug>/embedding/",
        api_agents.ProfileEmbeddingView.as_view(),
        name="api-agent-embedding",
    ),
    path(
        "agents/<slug:slug>/status/", api_agents.AgentStatusView.as_view(), name="api-agent-status"
    ),
    path("agents/<slug:slug>/keys/", api_agents.AgentKeysView.as_view(), name="api-agent-keys"),
    path(
        "agents/<slug:slug>/outcomes/",
        api_agents.AgentOutcomesView.as_view(),
        name="api-agent-outcomes",
    ),
    path(
        "agents/<slug:slug>/keys/<str:prefix>/revoke/",
        api_agents.AgentKeyRevokeView.as_view(),
        name="api-agent-key-revoke",
    ),
    path("skills/", api_skills.SkillListCreateView.as_view(), name="api-skills"),
    path("skills/<slug:slug>/", api_skills.SkillDetailView.as_view(), name="api-skill"),
]
