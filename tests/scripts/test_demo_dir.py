"""scripts/demo_dir.py: the demo's configuration keeps its files out of the real ones."""

from __future__ import annotations

from pathlib import Path

from dashboard.settings import DASHBOARD_KEYS
from healthd.config import HEALTHD_KEYS
from llama_core import settings
from llama_core.clients import ClientsFile
from llama_core.security import load_security
from scripts import demo_dir

SIM = "http://127.0.0.1:40000"


def user_config(tmp_path: Path) -> Path:
    path = tmp_path / "mine.yml"
    path.write_text(
        "proxy:\n  listen_port: 21435\n  history_path: /real/history.db\n"
        "  record_path: /real/cassette.jsonl\n"
        "dashboard:\n  port: 4001\n  history_path: /real/history.db\n"
        "healthd:\n  port: 9090\n  history_path: /real/history.db\n"
        "  state_path: /real/state.json\n",
        encoding="utf-8",
    )
    return path


def test_the_copy_keeps_the_users_settings_and_moves_every_file(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    written = demo_dir.write_config(demo, str(user_config(tmp_path)), SIM, env={})
    assert written == demo / "llama-metrics.yml" and written.stat().st_mode & 0o077 == 0
    proxy = settings.load("proxy", config=str(written), env={})
    dashboard = settings.load("dashboard", keys=DASHBOARD_KEYS, config=str(written), env={})
    healthd = settings.load("healthd", keys=HEALTHD_KEYS, config=str(written), env={})
    assert (proxy["listen_port"], dashboard["port"], healthd["port"]) == (21435, 4001, 9090)
    assert proxy["upstream"] == healthd["upstream"] == dashboard["ollama_url"] == SIM
    history = str(demo / "history.db")
    assert proxy["history_path"] == dashboard["history_path"] == healthd["history_path"] == history
    assert healthd["state_path"] == str(demo / "healthd-state.json")
    assert proxy["record_path"] == ""  # the demo records no cassette into the user's file
    assert "/real/" not in written.read_text(encoding="utf-8")


def test_the_variables_outrank_the_users_own(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    written = demo_dir.write_config(demo, str(user_config(tmp_path)), SIM, env={})
    env = {"LLAMA_METRICS_HEALTHD_STATE_PATH": "/real/state.json",
           "LLAMA_METRICS_PROXY_HISTORY_PATH": "/real/history.db", "OLLAMA_HOST": "http://x:1",
           **demo_dir.environment(demo, SIM)}
    proxy = settings.load("proxy", config=str(written), env=env)
    healthd = settings.load("healthd", keys=HEALTHD_KEYS, config=str(written), env=env)
    assert proxy["history_path"] == str(demo / "history.db") and proxy["upstream"] == SIM
    assert healthd["state_path"] == str(demo / "healthd-state.json")


def test_the_demo_has_clients_and_a_token_of_its_own(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    written = demo_dir.write_config(demo, str(user_config(tmp_path)), SIM, env={})
    security = load_security(config=str(written), env={})
    assert len(security.access_token) >= 16
    assert security.clients_file == str(demo / "clients.yml")
    assert security.client_user_header == "X-OpenWebUI-User-Name"
    clients = ClientsFile(security.clients_file, access_token=security.access_token).clients
    assert [c.name for c in clients.clients] == list(demo_dir.CLIENTS)
    assert clients.budget("ci-bot") == demo_dir.CLIENTS["ci-bot"]
    for name in ("clients.yml", "access-token", "llama-metrics.yml"):
        assert (demo / name).stat().st_mode & 0o077 == 0, name  # they hold keys
    # A second run keeps the keys: a browser that has the token goes on working.
    again = demo_dir.write_config(demo, str(user_config(tmp_path)), SIM, env={})
    assert load_security(config=str(again), env={}).access_token == security.access_token
