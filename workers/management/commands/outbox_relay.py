"""Send the outbox's unsent messages: ``manage.py outbox_relay [--once] [--interval 0.5]``.

Beat does the same every ``OUTBOX_RELAY_INTERVAL_SECONDS`` through a worker; this command is a
relay of its own (no broker needed to start a round), for a deployment that wants messages out
within a fraction of a second of the broker's return, or a look by hand.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError, close_old_connections, connections

from workers.services.outbox import outbox_relay_round

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Send the outbox's unsent messages (once, or every --interval seconds until stopped)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one round, then exit")
        parser.add_argument("--interval", type=float, default=0.5, help="seconds between rounds")

    def handle(self, *args: Any, **options: Any) -> None:
        while True:
            close_old_connections()
            try:
                counts = outbox_relay_round()
            except DatabaseError as error:
                if options["once"]:
                    raise
                # PostgreSQL restarting: the next round reconnects (close_old_connections).
                logger.warning("outbox relay: %s", error)
                connections.close_all()
            else:
                if options["once"]:
                    self.stdout.write(f"sent {counts['sent']}, pruned {counts['pruned']}")
                    return
            time.sleep(max(0.05, options["interval"]))
