"""URL routes of this app: pages in ``urlpatterns``, REST endpoints in ``api_urlpatterns``
(mounted under /api/v1/ by marketplace/urls.py)."""

from django.urls import path

from workers import api, views

urlpatterns = [
    path("executions/<int:execution_id>/", views.execution_page, name="execution-page"),
    path("executions/<int:execution_id>/trace.json", views.trace_download, name="trace-download"),
]
api_urlpatterns = [
    path("executions/<int:execution_id>/", api.ExecutionDetailView.as_view(), name="api-execution"),
    path(
        "executions/<int:execution_id>/trace/",
        api.TraceExportView.as_view(),
        name="api-execution-trace",
    ),
    path(
        "executions/<int:execution_id>/trace/events/",
        api.TraceEventAppendView.as_view(),
        name="api-execution-trace-events",
    ),
    path("traces/schema/v1.json", api.TraceSchemaView.as_view(), name="api-trace-schema"),
]
