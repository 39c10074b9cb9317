"""Verify our signed webhooks on the agent's side. Standard library only: copy this file as is.

    verifier = WebhookVerifier(["whsec_..."])           # two secrets during a rotation
    payload = verifier.verify(request_body_bytes, request_headers)   # raises VerificationError

Checks, in order: the three headers are present; the timestamp is within ``tolerance_seconds`` of
now (old captures and clock tricks fail); one ``v1`` signature matches one of the secrets (constant
time comparison); the message id has not been seen before (a captured request replayed within the
tolerance window fails). The id is remembered only after the signature verified, so forged
requests cannot fill the memory or burn real ids. ``MemoryReplayStore`` suits one process; give a
shared store (anything with ``add(message_id, expires_at) -> bool``) to several.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret


class VerificationError(Exception):
    """The request is not a valid, fresh, first delivery of a message signed by us."""


class ReplayStore(Protocol):
    def add(self, message_id: str, expires_at: float) -> bool:
        """Remember ``message_id`` until ``expires_at``; False when it was already there."""


class MemoryReplayStore:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def add(self, message_id: str, expires_at: float) -> bool:
        now = self._clock()
        with self._lock:
            for key in [key for key, expiry in self._seen.items() if expiry < now]:
                del self._seen[key]
            if message_id in self._seen:
                return False
            self._seen[message_id] = expires_at
            return True


def _secret_bytes(secret: str | bytes) -> bytes:
    if isinstance(secret, bytes):
        return secret
    if secret.startswith(SECRET_PREFIX):
        secret = secret[len(SECRET_PREFIX) :]
    return base64.b64decode(secret + "==")


class WebhookVerifier:
    def __init__(
        self,
        secrets: Sequence[str | bytes],
        *,
        tolerance_seconds: int = 300,
        replay_store: ReplayStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = [_secret_bytes(secret) for secret in secrets]
        if not self._keys or not all(self._keys):
            raise ValueError("at least one non-empty secret is needed")
        self.tolerance_seconds = tolerance_seconds
        self._clock = clock
        self.replay_store = replay_store or MemoryReplayStore(clock)

    def verify(self, body: bytes | str, headers: Mapping[str, str]) -> Any:
        """The JSON payload of a valid request; raises VerificationError otherwise."""
        data = body.encode() if isinstance(body, str) else body
        lowered = {name.lower(): value for name, value in headers.items()}
        message_id = lowered.get("webhook-id", "")
        timestamp_text = lowered.get("webhook-timestamp", "")
        signature_header = lowered.get("webhook-signature", "")
        if not (message_id and timestamp_text and signature_header):
            raise VerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
        try:
            timestamp = int(timestamp_text)
        except ValueError as error:
            raise VerificationError("webhook-timestamp is not an integer") from error
        now = self._clock()
        if abs(now - timestamp) > self.tolerance_seconds:
            raise VerificationError("webhook-timestamp is outside the tolerance window")
        signed = f"{message_id}.{timestamp}.".encode() + data
        expected = [hmac.new(key, signed, hashlib.sha256).digest() for key in self._keys]
        if not any(
            hmac.compare_digest(candidate, received)
            for received in self._received_signatures(signature_header)
            for candidate in expected
        ):
            raise VerificationError("no signature matches")
        if not self.replay_store.add(message_id, now + 2 * self.tolerance_seconds):
            raise VerificationError(f"message {message_id} was already received (replay)")
        try:
            return json.loads(data)
        except ValueError as error:
            raise VerificationError("the body is not JSON") from error

    @staticmethod
    def _received_signatures(header: str) -> list[bytes]:
        signatures = []
        for item in header.split():
            version, _, encoded = item.partition(",")
            if version != "v1":
                continue
            try:
                signatures.append(base64.b64decode(encoded, validate=True))
            except ValueError:
                continue
        return signatures
