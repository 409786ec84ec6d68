"""Access settings every process shares: the access token, and which addresses need one.

The ``security`` section of the configuration (YAML ``security:``, environment
``LLAMA_METRICS_SECURITY_<KEY>``) is read by the proxy, the dashboard and the health daemon
alike. With an ``access_token`` each of them answers only requests that carry
``Authorization: Bearer <token>``; without one, none of them may listen beyond the loopback
interface unless ``allow_remote_without_token`` says that something in front authenticates.

The proxy's clients (``clients_file``, ``allow_anonymous``, ``client_user_header``) are here
too: the file itself is read by ``llama_core.clients``, and ``docs/clients.md`` says how a
client's key and the access token combine.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .settings import ConfigError, Key, load, parse_bool, parse_path

logger = logging.getLogger(__name__)

SECTION = "security"
MIN_TOKEN = 16
TOKEN_ALLOWED = (
    f"empty (no token), or at least {MIN_TOKEN} printable ASCII characters without spaces"
)


def parse_token(value: Any) -> str:
    text = "" if value is None else str(value).strip()
    if text and (len(text) < MIN_TOKEN or not all("!" <= c <= "~" for c in text)):
        raise ValueError("token")
    return text


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


HEADER_NAME_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789"
                              "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def parse_header_name(value: Any) -> str:
    """An HTTP header name (RFC 9110 token), or empty for none."""
    text = _text(value)
    if len(text) > 100 or not set(text) <= HEADER_NAME_CHARS:
        raise ValueError(value)
    if text.lower() in ("authorization", "x-llama-metrics-source"):
        raise ValueError(value)  # ours: removed before anything could read a user from it
    return text


SECURITY_KEYS = (
    # Checked by load_security, not by the loader: its error would show the value.
    Key("access_token", _text, "", TOKEN_ALLOWED),
    Key("access_token_file", parse_path, "", "a readable file holding the token, or empty"),
    Key("allow_remote_without_token", parse_bool, False, "true or false"),
    # The proxy's clients (llama_core.clients; docs/clients.md).
    Key("clients_file", parse_path, "",
        "a YAML file of clients with their tokens (docs/clients.md), or empty for none"),
    Key("allow_anonymous", parse_bool, False,
        "true or false (with a clients file: let requests without a client token in as "
        "client 'anonymous')"),
    Key("client_user_header", parse_header_name, "",
        "an HTTP header name naming the user (X-OpenWebUI-User-Name), or empty: users are "
        "not recorded"),
)


class RemoteWithoutToken(ConfigError):
    """A non-loopback listen address while no token is set and the opt-out is not given."""

    def __init__(self, key: str, host: str) -> None:
        ValueError.__init__(
            self,
            f"{key}={host!r} is reachable from other machines, and no access token is set: "
            "set security.access_token (environment LLAMA_METRICS_SECURITY_ACCESS_TOKEN) or "
            "security.access_token_file, or listen on 127.0.0.1; behind an authenticating "
            "proxy of your own, set security.allow_remote_without_token: true "
            "(LLAMA_METRICS_SECURITY_ALLOW_REMOTE_WITHOUT_TOKEN=true)",
        )
        self.key = key


@dataclass(frozen=True, slots=True)
class Security:
    """The effective access settings; ``repr`` never shows the token."""

    access_token: str = field(default="", repr=False)
    allow_remote_without_token: bool = False
    clients_file: str = ""
    allow_anonymous: bool = False
    client_user_header: str = ""

    def headers(self) -> dict[str, str]:
        """What our own processes send each other: the token, when one is set."""
        return {"Authorization": f"Bearer {self.access_token}"} if self.access_token else {}

    def allows(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries the token (always, without one)."""
        if not self.access_token:
            return True
        scheme, _, given = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        # mitmproxy keeps bytes that are not UTF-8 as surrogates: plain encode() would raise,
        # and an exception in a hook lets the request through.
        given_bytes = given.strip().encode("utf-8", "surrogatepass")
        # Digests of equal length: compare_digest's time then tells nothing of the token's length.
        return hmac.compare_digest(hashlib.sha256(given_bytes).digest(),
                                   hashlib.sha256(self.access_token.encode()).digest())

    def check_listen(self, key: str, host: str) -> None:
        """RemoteWithoutToken if ``host`` is not loopback and nothing protects it."""
        if self.access_token or self.allow_remote_without_token or is_loopback(host):
            return
        raise RemoteWithoutToken(key, host)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and ``localhost``; an empty host (every interface) is not."""
    name = host.strip().strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # another host name: it may resolve anywhere


def load_security(
    *, config: str | None = None, env: Mapping[str, str] | None = None
) -> Security:
    """The ``security`` section; ConfigError on a bad value or an unreadable token file."""
    values = load(SECTION, keys=SECURITY_KEYS, config=config, env=env)
    token = values["access_token"]
    try:
        parse_token(token)
    except ValueError as e:  # never the token itself in the message: it would reach a log
        raise ConfigError(f"{SECTION}.access_token", "(not shown)", "configuration",
                          TOKEN_ALLOWED) from e
    path = values["access_token_file"]
    if path:
        key = f"{SECTION}.access_token_file"
        if token:
            raise ConfigError(key, path, "configuration",
                              "empty when security.access_token is set (one token, not two)")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeError) as e:
            reason = getattr(e, "strerror", None) or type(e).__name__
            raise ConfigError(key, path, "configuration",
                              f"a readable UTF-8 file holding the token ({reason})") from e
        try:
            token = parse_token(text)
        except ValueError as e:
            raise ConfigError(key, path, "configuration",
                              f"a file holding the token: {TOKEN_ALLOWED}") from e
        if not token:
            raise ConfigError(key, path, "configuration", "a file holding the token, not empty")
    return Security(token, values["allow_remote_without_token"], values["clients_file"],
                    values["allow_anonymous"], values["client_user_header"])
