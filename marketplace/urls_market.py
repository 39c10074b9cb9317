"""URL routes of this app: pages in ``urlpatterns``, REST endpoints in ``api_urlpatterns``
(mounted under /api/v1/ by marketplace/urls.py)."""

from django.urls import path

from marketplace.api import bids as bid_api
from marketplace.api import deliveries as delivery_api
from marketplace.api import tasks as task_api
from marketplace.views import market as market_views

urlpatterns: list = [
    path("tasks/new/", market_views.task_new, name="task-new"),
    path("tasks/new/preview/", market_views.task_preview, name="task-preview"),
    path("tasks/<int:task_id>/", market_views.task_detail, name="task-detail"),
    path("tasks/<int:task_id>/<slug:action>/", market_views.task_act, name="task-act"),
    path("files/<int:file_id>/", market_views.delivery_file, name="delivery-file"),
    path("dashboard/", market_views.dashboard, name="dashboard"),
    path("notifications/unread/", market_views.notifications_unread, name="notifications-unread"),
]

api_urlpatterns: list = [
    path("tasks/", task_api.TaskListView.as_view(), name="api-tasks"),
    path("tasks/for-me/", task_api.TasksForMeView.as_view(), name="api-tasks-for-me"),
    path("tasks/<id:task_id>/", task_api.TaskDetailView.as_view(), name="api-task"),
    path("tasks/<id:task_id>/events/", task_api.TaskEventsView.as_view(), name="api-task-events"),
    path(
        "tasks/<id:task_id>/dependencies/",
        task_api.TaskDependenciesView.as_view(),
        name="api-task-dependencies",
    ),
    path("tasks/<id:task_id>/subtasks/", task_api.SubtaskPostView.as_view(), name="api-subtasks"),
    path("tasks/<id:task_id>/claim/", task_api.TaskClaimView.as_view(), name="api-task-claim"),
    path(
        "tasks/<id:task_id>/publish/",
        task_api.TaskPublishView.as_view(),
        name="api-task-publish",
    ),
    path("tasks/<id:task_id>/start/", task_api.TaskStartView.as_view(), name="api-task-start"),
    path(
        "tasks/<id:task_id>/abandon/", task_api.TaskAbandonView.as_view(), name="api-task-abandon"
    ),
    path("tasks/<id:task_id>/cancel/", task_api.TaskCancelView.as_view(), name="api-task-cancel"),
    path(
        "tasks/<id:task_id>/escalate/",
        task_api.TaskEscalateView.as_view(),
        name="api-task-escalate",
    ),
    path(
        "tasks/<id:task_id>/actions/", task_api.TaskActionsView.as_view(), name="api-task-actions"
    ),
    path("tasks/<id:task_id>/bids/", bid_api.TaskBidsView.as_view(), name="api-task-bids"),
    path(
        "tasks/<id:task_id>/deliveries/",
        delivery_api.TaskDeliveriesView.as_view(),
        name="api-task-deliveries",
    ),
    path("tasks/<id:task_id>/dispute/", task_api.TaskDisputeView.as_view(), name="api-dispute"),
    path(
        "tasks/<id:task_id>/dispute/evidence/",
        delivery_api.DisputeEvidenceView.as_view(),
        name="api-dispute-evidence",
    ),
    path("bids/", bid_api.MyBidsView.as_view(), name="api-bids"),
    path("bids/<id:bid_id>/withdraw/", bid_api.BidWithdrawView.as_view(), name="api-bid-withdraw"),
    path("bids/<id:bid_id>/award/", bid_api.BidAwardView.as_view(), name="api-bid-award"),
    path("deliveries/", delivery_api.MyDeliveriesView.as_view(), name="api-deliveries"),
    path(
        "deliveries/<id:delivery_id>/",
        delivery_api.DeliveryDetailView.as_view(),
        name="api-delivery",
    ),
    path(
        "deliveries/<id:delivery_id>/files/<id:file_id>/",
        delivery_api.DeliveryFileView.as_view(),
        name="api-delivery-file",
    ),
    path(
        "deliveries/<id:delivery_id>/accept/",
        delivery_api.DeliveryAcceptView.as_view(),
        name="api-delivery-accept",
    ),
    path(
        "deliveries/<id:delivery_id>/revision/",
        delivery_api.DeliveryRevisionView.as_view(),
        name="api-delivery-revision",
    ),
    path(
        "deliveries/<id:delivery_id>/reject/",
        delivery_api.DeliveryRejectView.as_view(),
        name="api-delivery-reject",
    ),
    path("notifications/", task_api.NotificationsView.as_view(), name="api-notifications"),
    path(
        "notifications/read/",
        task_api.NotificationsReadView.as_view(),
        name="api-notifications-read",
    ),
    path("work/", task_api.MyWorkView.as_view(), name="api-work"),
]
