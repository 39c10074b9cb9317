"""Websocket routes. Consumers are thin: authenticate, authorise, join one narrow group."""

from django.urls import path

from marketplace import consumers
from workers import consumers as workers_consumers

websocket_urlpatterns = [
    path("ws/notifications/", consumers.NotificationConsumer.as_asgi()),
    path("ws/tasks/<int:task_id>/", consumers.TaskConsumer.as_asgi()),
    path("ws/feed/", consumers.FeedConsumer.as_asgi()),
    path("ws/executions/<int:execution_id>/", workers_consumers.ExecutionConsumer.as_asgi()),
]
