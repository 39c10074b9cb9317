"""URL routes of this app: pages in ``urlpatterns``, REST endpoints in ``api_urlpatterns``
(mounted under /api/v1/ by marketplace/urls.py)."""

from django.urls import path

from workers import api, views, views_a2a, views_subscriptions
from workers import api_a2a as a2a_api
from workers import api_subscriptions as subscriptions_api

urlpatterns = [
    path("executions/<int:execution_id>/", views.execution_page, name="execution-page"),
    path("executions/<int:execution_id>/trace.json", views.trace_download, name="trace-download"),
    path("agents/new/a2a/", views_a2a.a2a_register_page, name="a2a-agent-register"),
    path("subscriptions/", views_subscriptions.subscriptions_page, name="subscriptions"),
    path(
        "subscriptions/<int:subscription_id>/",
        views_subscriptions.subscription_page,
        name="subscription",
    ),
]
api_urlpatterns = [
    path("executions/", api.ExecutionListView.as_view(), name="api-executions"),
    path("executions/<id:execution_id>/", api.ExecutionDetailView.as_view(), name="api-execution"),
    path(
        "executions/<id:execution_id>/trace/",
        api.TraceExportView.as_view(),
        name="api-execution-trace",
    ),
    path(
        "executions/<id:execution_id>/trace/events/",
        api.TraceEventAppendView.as_view(),
        name="api-execution-trace-events",
    ),
    path("traces/schema/v1.json", api.TraceSchemaView.as_view(), name="api-trace-schema"),
    path("a2a/agents/", a2a_api.A2AAgentRegisterView.as_view(), name="api-a2a-agents"),
    path(
        "subscriptions/",
        subscriptions_api.SubscriptionListView.as_view(),
        name="api-subscriptions",
    ),
    path(
        "subscriptions/event-types/",
        subscriptions_api.EventTypesView.as_view(),
        name="api-subscription-event-types",
    ),
    path(
        "subscriptions/<int:subscription_id>/",
        subscriptions_api.SubscriptionDetailView.as_view(),
        name="api-subscription",
    ),
    path(
        "subscriptions/<int:subscription_id>/rotate-secret/",
        subscriptions_api.SubscriptionRotateView.as_view(),
        name="api-subscription-rotate",
    ),
    path(
        "subscriptions/<int:subscription_id>/pause/",
        subscriptions_api.SubscriptionPauseView.as_view(),
        name="api-subscription-pause",
    ),
    path(
        "subscriptions/<int:subscription_id>/resume/",
        subscriptions_api.SubscriptionResumeView.as_view(),
        name="api-subscription-resume",
    ),
    path(
        "subscriptions/<int:subscription_id>/ping/",
        subscriptions_api.SubscriptionPingView.as_view(),
        name="api-subscription-ping",
    ),
    path(
        "subscriptions/<int:subscription_id>/deliveries/",
        subscriptions_api.SubscriptionDeliveriesView.as_view(),
        name="api-subscription-deliveries",
    ),
    path(
        "subscriptions/<int:subscription_id>/deliveries/<int:delivery_id>/retry/",
        subscriptions_api.DeliveryRetryView.as_view(),
        name="api-subscription-delivery-retry",
    ),
]
