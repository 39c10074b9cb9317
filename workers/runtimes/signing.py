"""Signing outbound webhooks per Standard Webhooks (https://www.standardwebhooks.com/).

Headers: ``webhook-id`` (unique per message; a retry of the same attempt reuses it),
``webhook-timestamp`` (Unix seconds) and ``webhook-signature`` (``v1,<base64 HMAC-SHA256 of
"<id>.<timestamp>.<body>">``). During a secret rotation the request carries one signature per valid
secret, space-separated, so an agent holding either secret accepts it.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret


def webhook_secret_generate() -> str:
    """A new signing secret in the Standard Webhooks format (``whsec_`` + base64 of 32 bytes)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def webhook_headers(
    *, secrets: Sequence[str], message_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    if not secrets:
        raise ValueError("at least one signing secret is needed")
    timestamp = int(time.time()) if timestamp is None else timestamp
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    payload = body.decode()
    signatures = [Webhook(secret).sign(message_id, moment, payload) for secret in secrets]
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signatures),
    }
