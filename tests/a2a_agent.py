"""A real A2A agent for the tests, built with ``a2a-sdk``'s server (JSON-RPC binding, in-memory
task store), served on loopback by ``tests.protocols_servers.serving``.

What it does depends on a marker in the text it is sent: ``fail:`` ends the A2A task failed;
``slow:`` works for ``SLOW_SECONDS`` before completing; ``ask:`` asks a question (input-required)
and completes with a count of the answer it then receives; anything else completes at once with
a word count as text and data.
"""

from __future__ import annotations

import asyncio

from a2a.helpers.proto_helpers import (
    new_data_part,
    new_task_from_user_message,
    new_text_message,
    new_text_part,
)
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Role,
)
from starlette.applications import Starlette

SLOW_SECONDS = 30.0
RPC_PATH = "/a2a"


class WordCounter(AgentExecutor):
    def __init__(self) -> None:
        self.received: list[str] = []  # every user message, in order

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        text = context.get_user_input()
        self.received.append(text)
        if context.current_task is None:
            await event_queue.enqueue_event(new_task_from_user_message(context.message))
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.start_work()
        marker = next((m for m in ("fail:", "slow:", "ask:") if m in text.lower()), "")
        if marker == "fail:":
            await updater.failed(self._say(updater, "I cannot do this kind of task."))
            return
        if marker == "slow:":
            await asyncio.sleep(SLOW_SECONDS)
        if marker == "ask:":
            await updater.requires_input(self._say(updater, "Which language should I use?"))
            return
        words = len(text.split())
        await updater.add_artifact(
            [new_text_part(f"{words} words"), new_data_part({"words": words})], name="result"
        )
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.cancel()

    @staticmethod
    def _say(updater: TaskUpdater, text: str) -> object:
        return new_text_message(
            text, context_id=updater.context_id, task_id=updater.task_id, role=Role.ROLE_AGENT
        )


def agent_card(base_url: str) -> AgentCard:
    return AgentCard(
        name="Word Counter",
        description="Counts the words of any text it is sent, and says how many there are.",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(
                url=f"{base_url}{RPC_PATH}", protocol_binding="JSONRPC", protocol_version="1.0"
            )
        ],
        capabilities=AgentCapabilities(streaming=False),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain", "application/json"],
        skills=[
            AgentSkill(
                id="count-words",
                name="Count words",
                description="Counts the words of a text.",
                tags=["text", "word count", "statistics"],
            )
        ],
    )


def application(base_url: str) -> tuple[Starlette, WordCounter]:
    """The agent's ASGI app (card at /.well-known/agent-card.json, JSON-RPC at /a2a)."""
    executor = WordCounter()
    card = agent_card(base_url)
    handler = DefaultRequestHandler(
        agent_executor=executor, task_store=InMemoryTaskStore(), agent_card=card
    )
    routes = create_agent_card_routes(card) + create_jsonrpc_routes(handler, RPC_PATH)
    return Starlette(routes=routes), executor
