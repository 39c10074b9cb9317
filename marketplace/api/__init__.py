"""REST API of the market (mounted under /api/v1/ by ``marketplace/urls_market.py``)."""
