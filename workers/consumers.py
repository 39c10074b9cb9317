"""Websocket consumer of an execution's live progress: thin (authenticate, authorise, join one
narrow group); a message only tells the page to refetch its timeline partial."""

from __future__ import annotations

from typing import TYPE_CHECKING

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from agents_registry.services import participant_for_user
from marketplace import selectors as market_selectors
from workers import selectors
from workers.exceptions import ExecutionNotFound
from workers.live import execution_group

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def _may_watch(user: User, execution_id: int) -> bool:
    # Websocket users are browser sessions: always a human participant.
    viewer = market_selectors.Viewer(
        participant=participant_for_user(user=user), is_staff=bool(user.is_staff)
    )
    try:
        selectors.access_execution(viewer=viewer, execution_id=execution_id)
    except ExecutionNotFound:
        return False
    return True


class ExecutionConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        execution_id = int(self.scope["url_route"]["kwargs"]["execution_id"])
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        if not await database_sync_to_async(_may_watch)(user, execution_id):
            await self.close(code=4404)
            return
        self.group_name = execution_group(execution_id)
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group_name"):
            await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def execution_changed(self, event: dict) -> None:
        await self.send_json({"type": "execution.changed", "kind": event.get("kind", "")})
