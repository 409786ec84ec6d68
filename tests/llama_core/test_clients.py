"""llama_core/clients.py: the clients file, its checks (never showing a token), lookups, reloads."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest

from llama_core.clients import ClientsFile, load_clients, parse_clients
from llama_core.settings import ConfigError

ALICE = "alice-token-0123456789"
BOT = "ci-bot-token-9876543210"
BOT_SHA = hashlib.sha256(BOT.encode()).hexdigest()
GOOD = f"""
clients:
  alice:
    token: "{ALICE}"
  ci-bot:
    token_sha256: "{BOT_SHA.upper()}"
    daily_token_budget: 200000
"""


def write(tmp_path: Path, text: str, name: str = "clients.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_identifies_each_client_by_its_token(tmp_path: Path) -> None:
    clients = load_clients(write(tmp_path, GOOD))
    assert clients.names == ("alice", "ci-bot")
    assert clients.identify(f"Bearer {ALICE}") == "alice"
    assert clients.identify(f"bearer   {BOT} ") == "ci-bot"
    for header in (None, "", ALICE, f"Basic {ALICE}", f"Bearer {ALICE}x", "Bearer ",
                   f"Bearer {BOT_SHA}", "Bearer \udcff" + ALICE):
        assert clients.identify(header) is None, header
    assert clients.budget("ci-bot") == 200000 and clients.budget("alice") == 0
    assert clients.budget("nobody") == 0 and clients.budgets() == {"ci-bot": 200000}
    assert ALICE not in repr(clients) and BOT_SHA not in repr(clients).lower()


def test_an_empty_file_has_no_clients(tmp_path: Path) -> None:
    assert load_clients(write(tmp_path, "")).names == ()
    assert load_clients(write(tmp_path, "clients: {}\n")).names == ()


@pytest.mark.parametrize("text, key", [
    ("clients: [alice]", "clients"),
    ("other: {}", "(top level)"),
    ("clients:\n  anonymous: {token: 'x123456789012345678'}", "clients.anonymous"),
    ("clients:\n  'has space': {token: 'x123456789012345678'}", "clients.has space"),
    ("clients:\n  a: {}", "clients.a"),
    ("clients:\n  a: 'SECRET-0123456789'", "clients.a"),
    ("clients:\n  a: {token: 'SECRET-short'}", "clients.a.token"),
    ("clients:\n  a: {token: 'SECRET with spaces inside'}", "clients.a.token"),
    ("clients:\n  a: {token: 12345678901234567890}", "clients.a.token"),
    ("clients:\n  a: {token_sha256: 'SECRET-abc'}", "clients.a.token_sha256"),
    (f"clients:\n  a: {{token: 'SECRET-0123456789', token_sha256: '{BOT_SHA}'}}", "clients.a"),
    ("clients:\n  a: {token: 'SECRET-0123456789', daily_token_budget: -1}",
     "clients.a.daily_token_budget"),
    ("clients:\n  a: {token: 'SECRET-0123456789', daily_token_budget: 'lots'}",
     "clients.a.daily_token_budget"),
    ("clients:\n  a: {token: 'SECRET-0123456789', daily_token_budget: true}",
     "clients.a.daily_token_budget"),
    ("clients:\n  a: {token: 'SECRET-0123456789', budget: 5}", "clients.a.budget"),
    ("clients:\n  a: {token: 'SECRET-0123456789'}\n  b: {token: 'SECRET-0123456789'}",
     "clients.b"),
    ("clients:\n  a: {token: 'SECRET-0123456789'\n", "line"),
])
def test_a_bad_file_names_the_key_never_the_token(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_clients(path)
    message = str(e.value)
    assert message.startswith(f"bad setting security.clients_file: {key}"), message
    assert str(path) in message
    assert "SECRET" not in message
    assert e.value.__cause__ is None or "SECRET" not in str(e.value.__cause__)


def test_a_client_token_may_not_be_the_access_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="clients.alice=.*security.access_token"):
        parse_clients(GOOD, tmp_path / "c.yml", access_token=ALICE)


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"security.clients_file='.*missing.yml'"):
        load_clients(tmp_path / "missing.yml")


def test_a_changed_file_is_read_again_and_a_bad_edit_keeps_the_last_good(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, GOOD)
    file = ClientsFile(path)
    assert not file.reload_if_changed()  # unchanged
    path.write_text(GOOD + "  carol:\n    token: 'carol-token-0123456789'\n")
    os.utime(path, ns=(1, 1))  # a new stamp whatever the clock's resolution
    assert file.reload_if_changed()
    assert file.clients.identify("Bearer carol-token-0123456789") == "carol"

    path.write_text("clients:\n  carol: {token: 'SECRET-short'}\n")
    os.utime(path, ns=(2, 2))
    with caplog.at_level(logging.ERROR):
        assert not file.reload_if_changed()
        assert not file.reload_if_changed()  # the same bad version: said once
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "clients.carol.token" in errors[0], errors
    assert "SECRET" not in errors[0]
    assert file.clients.identify("Bearer carol-token-0123456789") == "carol"  # still in force

    path.unlink()
    assert not file.reload_if_changed()  # gone: the last good stays
    assert file.clients.identify(f"Bearer {ALICE}") == "alice"
