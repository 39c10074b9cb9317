"""Encryption at rest of agents' secrets (webhook signing secrets, API keys of model providers).

Fernet (AES-128-CBC + HMAC-SHA256) with a key derived from ``SECRET_KEY``: a database dump alone
does not reveal the secrets. Changing ``SECRET_KEY`` makes stored secrets unreadable; rotate the
agents' secrets after changing it.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


def _fernet() -> Fernet:
    digest = hashlib.sha256(b"workers.secrets.v1:" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def secret_encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def secret_decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as error:
        raise ValueError("a stored secret cannot be decrypted (was SECRET_KEY changed?)") from error
