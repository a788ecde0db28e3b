"""Secrets at rest (webhook signing secrets, …): sealed with Fernet (AES-128-CBC and
HMAC-SHA256, `cryptography`) under BACKSTOP_SECRETS_KEY. Several comma-separated keys
rotate: the first seals, every one opens.

Make a key: python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from backstop.settings import Settings

__all__ = ["InvalidToken", "open_secret", "seal"]


@lru_cache(maxsize=8)
def _fernet(keys: str) -> MultiFernet:
    try:
        return MultiFernet([Fernet(k.strip().encode()) for k in keys.split(",") if k.strip()])
    except ValueError as exc:
        raise ValueError(f"BACKSTOP_SECRETS_KEY: not Fernet keys ({exc})") from None


def seal(settings: Settings, secret: str) -> str:
    """`secret` encrypted under the first key, as text for a database column."""
    return _fernet(settings.secrets_key).encrypt(secret.encode()).decode()


def open_secret(settings: Settings, sealed: str) -> str:
    """The secret `seal` sealed; InvalidToken when no key opens it (or it was altered)."""
    return _fernet(settings.secrets_key).decrypt(sealed.encode()).decode()
