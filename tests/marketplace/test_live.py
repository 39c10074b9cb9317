"""Websocket hints leave through the publisher thread after the commit, never before."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from marketplace import live


@pytest.mark.django_db(transaction=True)
def test_a_hint_is_sent_after_the_commit_and_not_on_rollback() -> None:
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("live-test", channel)

    with pytest.raises(RuntimeError), transaction.atomic():
        live.publish_on_commit("live-test", {"type": "hint", "n": 0})
        raise RuntimeError("rolled back")
    with transaction.atomic():
        live.publish_on_commit("live-test", {"type": "hint", "n": 1})
        assert live.flush(timeout=2)  # nothing is queued before the commit
    assert live.flush(timeout=5)

    message = async_to_sync(layer.receive)(channel)
    assert message == {"type": "hint", "n": 1}
    async_to_sync(layer.group_discard)("live-test", channel)


def test_the_publisher_sends_only_to_groups_that_have_members() -> None:
    """One pipelined round trip finds the batch's groups that have members; the others (a page
    nobody has open) cost no ``group_send``."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("live-listened", channel)
    try:
        groups = {"live-listened", "live-nobody", "task.0"}
        assert async_to_sync(live._listened)(layer, groups) == {"live-listened"}
    finally:
        async_to_sync(layer.group_discard)("live-listened", channel)
    assert async_to_sync(live._listened)(layer, {"live-listened"}) == set()


@pytest.mark.django_db(transaction=True)  # the consumer reads the session user from the database
def test_an_idle_websocket_outlives_the_layers_blocking_receive() -> None:
    """A consumer waits on the channel layer with a blocking BZPOPMIN; with a socket timeout no
    longer than it the read timed out, the consumer died and hints sent meanwhile were lost."""
    import asyncio

    from channels.testing import WebsocketCommunicator
    from channels_redis.core import RedisChannelLayer

    from marketplace.consumers import FeedConsumer

    async def idle_then_hint() -> str:
        communicator = WebsocketCommunicator(FeedConsumer.as_asgi(), "/ws/feed/")
        connected, _ = await communicator.connect()
        assert connected
        try:
            # Two of the layer's blocking receives, so a timeout as long as one is caught.
            await asyncio.sleep(2 * RedisChannelLayer.brpop_timeout + 1)
            assert not communicator.future.done(), communicator.future.exception()
            await get_channel_layer().group_send(
                "market.feed", {"type": "task.changed", "kind": "task_posted"}
            )
            return await communicator.receive_from(timeout=5)
        finally:
            await communicator.disconnect()

    assert 'data-kind="task_posted"' in async_to_sync(idle_then_hint)()
