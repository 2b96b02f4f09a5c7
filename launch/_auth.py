"""Client-side Ray token auth, resolved the way Ray 2.60's ``AuthenticationTokenLoader`` does.

Ray 2.60 (measured here): a head started by ``ray start`` runs with token auth when a token exists
(``~/.ray/auth_token``) or ``RAY_AUTH_MODE=token``; CLI/SDK clients default to
``RAY_AUTH_MODE=disabled`` and then send no token, so submissions fail with AuthenticationError.
We therefore always attach the token ourselves as an ``Authorization: Bearer`` header (harmless
when the cluster has auth disabled: its middleware ignores the header).

Token lookup order (checked against ``ray._raylet.AuthenticationTokenLoader``):
  1. ``RAY_AUTH_TOKEN``            the token itself
  2. ``RAY_AUTH_TOKEN_PATH``       a file holding it (an error if set but unreadable/empty)
  3. ``~/.ray/auth_token``         the default written by ``ray get-auth-token --generate``

Never put ``RAY_AUTH_MODE`` / ``RAY_AUTH_TOKEN*`` in a job's ``runtime_env``: the nodes already carry
them and overriding them there breaks every worker of the job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

AUTH_ENV_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


class AuthConfigError(RuntimeError):
    pass


@dataclass(frozen=True)
class Token:
    value: str
    source: str                  # where it came from, for messages (never the token itself)
    path: Optional[str] = None   # the file it was read from, if any

    def header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.value}"}


def default_token_path() -> Path:
    return Path.home() / ".ray" / "auth_token"


def _read(path: Path, source: str) -> Token:
    try:
        value = path.read_text().strip()
    except OSError as e:
        raise AuthConfigError(f"{source} is set but cannot be read: {path} ({e.strerror})") from None
    if not value:
        raise AuthConfigError(f"{source} points at an empty token file: {path}")
    return Token(value, f"{source}={path}", str(path))


def resolve_token(token_path: Optional[str] = None, env: Optional[Mapping[str, str]] = None) -> Optional[Token]:
    """The token a client should send, or None when there is none anywhere.

    ``token_path`` (e.g. ``--auth-token-path``) beats the environment."""
    env = os.environ if env is None else env
    if token_path:
        return _read(Path(token_path).expanduser(), "--auth-token-path")
    if env.get("RAY_AUTH_TOKEN", "").strip():
        return Token(env["RAY_AUTH_TOKEN"].strip(), "RAY_AUTH_TOKEN")
    if env.get("RAY_AUTH_TOKEN_PATH"):
        return _read(Path(env["RAY_AUTH_TOKEN_PATH"]).expanduser(), "RAY_AUTH_TOKEN_PATH")
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    default = home / ".ray" / "auth_token"
    if default.is_file():
        return _read(default, "default token file")
    return None


def client_auth_env(token_path: Optional[str], mode: str = "token") -> dict[str, str]:
    """Environment for a Ray *client* process (``ray job ...``, ``ray status``), never for a job."""
    env = {"RAY_AUTH_MODE": mode}
    if token_path:
        env["RAY_AUTH_TOKEN_PATH"] = str(token_path)
    return env
