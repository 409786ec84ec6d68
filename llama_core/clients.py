"""The clients file: named clients, each with its own key and optional daily token budget.

``security.clients_file`` names a YAML file (``docs/clients.md``)::

    clients:
      alice:
        token: "at least 16 printable characters"
      ci-bot:
        token_sha256: "<hex SHA-256 of the token>"   # the file need not hold the secret
        daily_token_budget: 200000                   # prompt + generated tokens per UTC day

Only SHA-256 digests are kept in memory; a token is compared by its digest, in constant time,
against every client (no early exit), and neither a token nor a digest is ever in a message.
``ClientsFile`` notices a changed file by its modification time and size and keeps the last
good clients when an edit is bad.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .security import MIN_TOKEN, parse_token
from .settings import ConfigError

logger = logging.getLogger(__name__)

KEY = "security.clients_file"
# The client of requests without a known token where ``allow_anonymous`` lets them in.
ANONYMOUS = "anonymous"
# A client name is a metric label value and a row's column: short, plain, one spelling.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NAME_ALLOWED = ("a name of 1-64 letters, digits, '.', '_' or '-' (starting with a letter or "
                f"digit), not {ANONYMOUS!r}")
CLIENT_KEYS = frozenset({"token", "token_sha256", "daily_token_budget"})
HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def digest(token: str) -> bytes:
    """The SHA-256 of a token as sent (bytes mitmproxy keeps as surrogates included)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value, or None."""
    scheme, _, given = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return None
    return given.strip()


@dataclass(frozen=True, slots=True)
class Client:
    """One configured client; ``repr`` never shows its digest."""

    name: str
    token_digest: bytes = field(repr=False)
    daily_token_budget: int = 0  # 0: none


@dataclass(frozen=True, slots=True)
class Clients:
    """The configured clients; ``identify`` finds the one a request's token belongs to."""

    clients: tuple[Client, ...] = ()

    def identify(self, authorization: str | None) -> str | None:
        """The name of the client whose token ``authorization`` carries, or None."""
        token = bearer(authorization)
        if token is None:
            return None
        given = digest(token)
        found = None
        # Every client is compared, equal digests or not: the time says nothing of which.
        for client in self.clients:
            if hmac.compare_digest(given, client.token_digest):
                found = client.name
        return found

    def budget(self, name: str) -> int:
        """The client's daily token budget (0: none, and for a name not configured)."""
        for client in self.clients:
            if client.name == name:
                return client.daily_token_budget
        return 0

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(client.name for client in self.clients)

    def budgets(self) -> dict[str, int]:
        """Every client that has a budget, with it."""
        return {c.name: c.daily_token_budget for c in self.clients if c.daily_token_budget}


def _bad(path: Path, where: str, allowed: str, value: object = "(not shown)") -> ConfigError:
    return ConfigError(f"{KEY}: {where}", value, str(path), allowed)


def _budget(path: Path, name: str, value: Any) -> int:
    where = f"clients.{name}.daily_token_budget"
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(path, where, "a whole number of tokens >= 0 (0: no budget)", value)
    return value


def _client(path: Path, name: Any, entry: Any) -> Client:
    if not isinstance(name, str) or not NAME.fullmatch(name) or name == ANONYMOUS:
        raise _bad(path, f"clients.{name}", NAME_ALLOWED, name)
    if not isinstance(entry, dict):
        # Not the value: a token written in the client's place would be shown.
        raise _bad(path, f"clients.{name}", "a mapping with token or token_sha256",
                   f"(a {type(entry).__name__})")
    unknown = sorted(str(k) for k in entry if k not in CLIENT_KEYS)
    if unknown:
        raise _bad(path, f"clients.{name}.{unknown[0]}",
                   "only " + ", ".join(sorted(CLIENT_KEYS)), "(a key)")
    has_token, has_digest = "token" in entry, "token_sha256" in entry
    if has_token == has_digest:
        raise _bad(path, f"clients.{name}", "exactly one of token and token_sha256",
                   "(both)" if has_token else "(neither)")
    if has_token:
        raw = entry["token"]
        try:  # never the token in the message: it would reach a log
            token = parse_token(raw) if isinstance(raw, str) else ""
        except ValueError:
            token = ""
        if not token:
            raise _bad(path, f"clients.{name}.token",
                       f"at least {MIN_TOKEN} printable ASCII characters without spaces")
        token_digest = digest(token)
    else:
        raw = entry["token_sha256"]
        if not isinstance(raw, str) or not HEX64.fullmatch(raw.strip()):
            raise _bad(path, f"clients.{name}.token_sha256",
                       "the 64 hex digits of the token's SHA-256 (sha256sum)")
        token_digest = bytes.fromhex(raw.strip())
    return Client(name, token_digest, _budget(path, name, entry.get("daily_token_budget")))


def parse_clients(text: str, path: Path, *, access_token: str = "") -> Clients:
    """The clients of a file's text; ConfigError naming the key (never a token) when bad."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "its text"
        # Not ``from e``: the parser's message quotes the text around the error, a token maybe.
        raise _bad(path, where, "valid YAML") from None
    if data is None:
        data = {}
    if not isinstance(data, dict) or set(data) - {"clients"}:
        raise _bad(path, "(top level)", "a mapping with one key, clients", "(not that)")
    entries = data.get("clients") or {}
    if not isinstance(entries, dict):
        raise _bad(path, "clients", "a mapping of client names to their settings",
                   type(entries).__name__)
    clients = tuple(_client(path, name, entry) for name, entry in entries.items())
    seen: dict[bytes, str] = {}
    own = digest(access_token) if access_token else None
    for client in clients:
        if client.token_digest in seen:
            raise _bad(path, f"clients.{client.name}",
                       f"a token of its own (client {seen[client.token_digest]!r} has the same)")
        if own is not None and hmac.compare_digest(client.token_digest, own):
            raise _bad(path, f"clients.{client.name}",
                       "a token other than security.access_token (our own processes' token)")
        seen[client.token_digest] = client.name
    return Clients(clients)


def load_clients(path: str | os.PathLike[str], *, access_token: str = "") -> Clients:
    """Read and check the clients file; ConfigError naming the key when it cannot be used."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as e:
        reason = getattr(e, "strerror", None) or type(e).__name__
        raise ConfigError(KEY, str(file), "configuration",
                          f"a readable UTF-8 YAML file of clients ({reason})") from e
    return parse_clients(text, file, access_token=access_token)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


class ClientsFile:
    """A clients file read at start and again whenever it changes (``reload_if_changed``).

    The first read raises ConfigError (the start stops); a later bad or unreadable edit is
    logged with the key and the last good clients stay in force.
    """

    def __init__(self, path: str | os.PathLike[str], *, access_token: str = "") -> None:
        self.path = Path(path)
        self.access_token = access_token
        self._stamp = _stamp(self.path)
        self.clients = load_clients(self.path, access_token=access_token)
        self._failed_stamp: tuple[int, int] | None = None

    def reload_if_changed(self) -> bool:
        """Read the file again if its modification time or size changed; True when the new
        clients are in force. Off the request path: it reads a file."""
        stamp = _stamp(self.path)
        if stamp == self._stamp or stamp == self._failed_stamp:
            return False
        try:
            clients = load_clients(self.path, access_token=self.access_token)
        except ConfigError as e:
            self._failed_stamp = stamp  # said once per bad version, not every poll
            logger.error("clients file %s not reloaded, the last good one stays in force: %s",
                         self.path, e)
            return False
        self._stamp, self._failed_stamp, self.clients = stamp, None, clients
        logger.info("clients file %s reloaded: %d clients", self.path, len(clients.clients))
        return True
