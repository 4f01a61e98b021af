"""The vendor's request authentication as the sandbox checks it: ``Api-Key``, ``Timestamp``, ``Sign``."""

from __future__ import annotations

import hashlib
import hmac
import re

from airflow_provider_itnio.sandbox.validation import Rejected

#: How far (seconds) the ``Timestamp`` header may be from the server's clock.
TIMESTAMP_WINDOW = 300

_INTEGER = re.compile(r"-?[0-9]+")


def sign(api_key: str, api_secret: str, timestamp: str) -> str:
    """
    Return the ``Sign`` header value: lowercase hex ``md5(api_key + api_secret + timestamp)``.

    :param api_key: The account's API key.
    :param api_secret: The account's API secret.
    :param timestamp: The ``Timestamp`` header value, exactly as sent.
    """
    return hashlib.md5(f"{api_key}{api_secret}{timestamp}".encode()).hexdigest()


def check_headers(
    api_key_header: str | None,
    timestamp_header: str | None,
    sign_header: str | None,
    *,
    api_key: str,
    api_secret: str,
    now: float,
) -> None:
    """
    Check a request's authentication headers like the vendor does.

    :param api_key_header: The ``Api-Key`` header (None when missing).
    :param timestamp_header: The ``Timestamp`` header (None when missing).
    :param sign_header: The ``Sign`` header (None when missing).
    :param api_key: The account's API key.
    :param api_secret: The account's API secret.
    :param now: The server's clock, Unix seconds.
    :raises Rejected: ``-1`` for a wrong key or signature, ``-16`` for a missing, bad or stale timestamp.
    """
    auth_error = Rejected("-1", reason="authentication error")
    if api_key_header is None or not hmac.compare_digest(api_key_header.encode(), api_key.encode()):
        raise auth_error
    expected = sign(api_key, api_secret, timestamp_header or "")
    if sign_header is None or not hmac.compare_digest(sign_header.strip().lower().encode(), expected.encode()):
        raise auth_error
    stale = Rejected("-16", reason="timestamp expires")
    if timestamp_header is None or not _INTEGER.fullmatch(timestamp_header.strip()):
        raise stale
    if abs(int(timestamp_header.strip()) - int(now)) > TIMESTAMP_WINDOW:
        raise stale
