"""llama_core/security.py: which addresses are loopback, the Bearer check, the token's sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_core.security import RemoteWithoutToken, Security, is_loopback, load_security
from llama_core.settings import ConfigError

TOKEN = "0123456789abcdef-token"


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("LOCALHOST.", True), ("0.0.0.0", False), ("::", False),
    ("", False), ("192.168.1.5", False), ("example.com", False), ("::ffff:10.0.0.1", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("header, allowed", [
    (f"Bearer {TOKEN}", True), (f"bearer {TOKEN}", True), (f"  Bearer   {TOKEN} ", True),
    (None, False), ("", False), (f"Basic {TOKEN}", False), (f"Bearer {TOKEN}x", False),
    (f"Bearer {TOKEN[:-1]}", False), (TOKEN, False), ("Bearer ", False),
])
def test_allows_only_the_bearer_token(header: str | None, allowed: bool) -> None:
    assert Security(TOKEN).allows(header) is allowed
    assert Security().allows(header)  # no token: everything


def test_check_listen() -> None:
    with pytest.raises(RemoteWithoutToken, match=r"dashboard.host='0.0.0.0' is reachable"):
        Security().check_listen("dashboard.host", "0.0.0.0")
    Security().check_listen("dashboard.host", "127.0.0.1")
    Security(TOKEN).check_listen("dashboard.host", "0.0.0.0")
    Security(allow_remote_without_token=True).check_listen("dashboard.host", "0.0.0.0")


def test_token_never_in_repr_or_errors(tmp_path: Path) -> None:
    assert TOKEN not in repr(Security(TOKEN))
    short = "short-secret"
    with pytest.raises(ConfigError) as e:
        load_security(config=str(empty(tmp_path)),
                      env={"LLAMA_METRICS_SECURITY_ACCESS_TOKEN": short})
    assert short not in str(e.value) and "security.access_token" in str(e.value)


def empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.yml"
    path.write_text("{}\n")
    return path


def test_token_file(tmp_path: Path) -> None:
    config = str(empty(tmp_path))
    token_file = tmp_path / "token"
    token_file.write_text(f"\n  {TOKEN}\n")
    env = {"LLAMA_METRICS_SECURITY_ACCESS_TOKEN_FILE": str(token_file)}
    assert load_security(config=config, env=env) == Security(TOKEN)
    with pytest.raises(ConfigError, match="one token, not two"):
        load_security(config=config,
                      env={**env, "LLAMA_METRICS_SECURITY_ACCESS_TOKEN": TOKEN})
    token_file.write_text("\n")
    with pytest.raises(ConfigError, match="not empty"):
        load_security(config=config, env=env)
    token_file.unlink()
    with pytest.raises(ConfigError, match=r"security.access_token_file=.*readable"):
        load_security(config=config, env=env)
