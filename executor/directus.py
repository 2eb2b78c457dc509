"""A small Directus REST client for `oneroof approve`: the approver's own login, never a static token."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from oneroof.harness.errors import OneroofError, UsageError

TIMEOUT = 30.0


class DirectusRefused(OneroofError):
    """Directus could not be reached, refused the login, or refused a request."""


@dataclass(frozen=True)
class Session:
    """A logged-in Directus session: the base URL and the access token /auth/login returned."""

    url: str
    token: str

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One authenticated REST call to Directus; its decoded JSON `data`."""
        return _request(self.url, method, path, body, self.token)


def _request(url: str, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url.rstrip("/") + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:  # noqa: S310 - http(s) checked in login
            raw = answer.read()
    except urllib.error.HTTPError as exc:
        raise DirectusRefused(f"Directus refused {method} {path} (HTTP {exc.code}): {_message(exc.read())}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DirectusRefused(f"cannot reach Directus at {url}: {reason} (check --directus)") from exc
    try:
        payload = json.loads(raw) if raw else {}
    except ValueError as exc:
        raise DirectusRefused(f"Directus answered {method} {path} with something that is not JSON") from exc
    return payload.get("data") if isinstance(payload, dict) else None


def _message(raw: bytes) -> str:
    try:
        errors = json.loads(raw).get("errors") or []
        return "; ".join(str(e.get("message")) for e in errors) or "no reason given"
    except (ValueError, AttributeError):
        return "no reason given"


def login(url: str, email: str, password: str) -> Session:
    """POST /auth/login with the approver's email and password."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise UsageError(f"--directus {url!r} is not an http(s) URL of the Directus instance")
    data = _request(url, "POST", "/auth/login", {"email": email, "password": password})
    if not isinstance(data, dict) or not data.get("access_token"):
        raise DirectusRefused("Directus answered the login without an access token")
    return Session(url, str(data["access_token"]))
