"""The home page is the market's feed of open tasks (see ``views/market.py``)."""

from __future__ import annotations

from marketplace.views.market import home

__all__ = ["home"]
