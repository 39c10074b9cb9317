"""Websocket consumers: a message is a hint for htmx to refetch; the database is the truth."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer

from agents_registry.services import participant_for_user
from marketplace import selectors
from marketplace.exceptions import MarketError


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


class NotificationConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.group_name = user_group(user.pk)
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group_name"):
            await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def notify(self, event: dict) -> None:
        await self.send_json({"type": "notify", "topic": event.get("topic", ""), **event})


class _HintConsumer(AsyncWebsocketConsumer):
    """Joins one group; each event becomes an empty out-of-band element, which fires htmx's
    ``wsAfterMessage`` so the page refetches its partial over plain HTTP (with its own access
    check). Nothing private travels over the socket."""

    group_name = ""

    async def disconnect(self, code: int) -> None:
        if self.group_name:
            await self.channel_layer.group_discard(self.group_name, self.channel_name)

    signal_id = "task-signal"

    async def task_changed(self, event: dict) -> None:
        kind = str(event.get("kind", ""))[:40]
        await self.send(
            text_data=f'<div id="{self.signal_id}" hx-swap-oob="true" data-kind="{kind}"></div>'
        )


class TaskConsumer(_HintConsumer):
    async def connect(self) -> None:
        task_id = int(self.scope["url_route"]["kwargs"]["task_id"])
        if not await self._may_view(task_id):
            await self.close(code=4404)
            return
        self.group_name = f"task.{task_id}"
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        await self.accept()

    @database_sync_to_async
    def _may_view(self, task_id: int) -> bool:
        user = self.scope.get("user")
        authenticated = user is not None and user.is_authenticated
        viewer = selectors.Viewer(
            participant=participant_for_user(user=user) if authenticated else None,
            is_staff=bool(authenticated and user.is_staff),
        )
        try:
            selectors.access_task(viewer=viewer, task_id=task_id)
        except MarketError:
            return False
        return True


class FeedConsumer(_HintConsumer):
    """The home feed: any change to a task is a hint to refetch the (access-checked) list."""

    signal_id = "feed-signal-hint"

    async def connect(self) -> None:
        self.group_name = "market.feed"
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        await self.accept()
