"""Beat sweeps over many items, each handled in a transaction of its own.

One item's failure (a bug, a row the code did not expect, a connection lost for a moment) is
logged with its traceback and left for the next round; the items after it are still handled.
Before this, one delivery naming a skill that did not exist stopped the review-window sweep, and
with it every other poster's settlement.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TypeVar

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


def sweep(
    items: Iterable[Item], work: Callable[[Item], Result], *, what: str
) -> list[Result | None]:
    """``work(item)`` for each item; None in place of an item whose work raised (logged)."""
    results: list[Result | None] = []
    for item in items:
        try:
            results.append(work(item))
        except Exception:  # isolate the item: logged with its traceback, retried next round
            logger.exception("%s %s failed in a sweep; the next round tries it again", what, item)
            results.append(None)
    return results
