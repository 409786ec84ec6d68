"""deploy/: the Compose stack, the Dockerfile, the systemd units and deploy/run.

Docker itself cannot run here (no engine in CI), so the Compose file and the Dockerfile are
checked as data: every published port on 127.0.0.1, every mounted file present, one image for
the three llama-metrics services. deploy/run, their shared entry point, is run for real.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from healthd.config import HEALTHD_KEYS
from llama_core import settings
from ollama_sim import SimServer
from tests.stack.tools import DEPLOY, ROOT, load_yaml
from tests.support.processes import Proxy

COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
OURS = ("proxy", "dashboard", "healthd")


def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)  # PyYAML resolves the `<<: *llama-metrics` merge keys


# -- Compose ---------------------------------------------------------------------------------


def test_compose_services_and_profiles() -> None:
    services = compose()["services"]
    assert set(services) == {*OURS, "prometheus", "grafana", "alertmanager", "ollama"}
    assert services["alertmanager"]["profiles"] == ["alertmanager"]
    assert services["ollama"]["profiles"] == ["ollama"]
    for name in (*OURS, "prometheus", "grafana"):
        assert "profiles" not in services[name], f"{name} runs by default"


def test_compose_ports_are_published_on_loopback_only() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name}: {port}"
    published = {
        name: {p.split(":")[1] for p in s.get("ports", [])}
        for name, s in compose()["services"].items()
    }
    assert published["proxy"] == {"11435", "8001"}
    assert published["dashboard"] == {"3001"}
    assert published["healthd"] == {"8080"}
    assert published["prometheus"] == {"9090"}
    assert published["alertmanager"] == {"9093"}
    assert published["ollama"] == set()  # clients go through the proxy


EMPTY_CONFIG = Path(__file__).with_name("empty.yml")


def test_compose_llama_metrics_services_share_one_hardened_image() -> None:
    services = compose()["services"]
    for name in OURS:
        s = services[name]
        assert s["image"] == "llama-metrics:local"
        assert s["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert (DEPLOY / s["build"]["context"] / s["build"]["dockerfile"]).resolve() == DOCKERFILE
        assert s["read_only"] is True and s["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in s["security_opt"]
        assert "llama-metrics-data:/var/lib/llama-metrics" in s["volumes"]
        command = s["command"]
        assert command[0] == name
        assert "OLLAMA_HOST" in s["environment"]
    dashboard = services["dashboard"]["command"]
    assert "--host=0.0.0.0" in dashboard
    assert "--history=/var/lib/llama-metrics/history.db" in dashboard
    assert "--proxy-metrics=http://proxy:8001" in dashboard
    assert "--host=0.0.0.0" in services["healthd"]["command"]
    # Every healthd setting the compose file gives is one healthd accepts (an unknown or bad
    # one would stop it with status 2).
    env = {k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(v))  # compose's ${VAR:-default}
           for k, v in services["healthd"]["environment"].items()}
    healthd = settings.load("healthd", keys=HEALTHD_KEYS, config=str(EMPTY_CONFIG), env=env)
    assert healthd["proxy_url"] == "http://proxy:11435"
    assert healthd["proxy_metrics_url"] == "http://proxy:8001"


def test_compose_mounted_files_exist_and_volumes_are_declared() -> None:
    config = compose()
    declared = set(config["volumes"])
    for name, service in config["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"
            else:
                assert source in declared, f"{name}: volume {source} not declared"


def test_compose_prometheus_mounts_the_rules_beside_its_config() -> None:
    volumes = compose()["services"]["prometheus"]["volumes"]
    mounts = dict(v.split(":")[:2] for v in volumes)
    assert mounts["./compose/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert mounts["../config/alerts.yml"] == "/etc/prometheus/alerts.yml"
    command = compose()["services"]["prometheus"]["command"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in command


def test_compose_image_versions_are_pinned() -> None:
    services = compose()["services"]
    assert services["prometheus"]["image"].startswith("prom/prometheus:v2.")
    assert services["alertmanager"]["image"] == "prom/alertmanager:v0.25.0"
    assert re.fullmatch(r"grafana/grafana-oss:\d+\.\d+\.\d+", services["grafana"]["image"])


# -- Dockerfile ------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def test_dockerfile() -> None:
    steps = dockerfile()
    get: dict[str, list[str]] = {}
    for instruction, args in steps:
        get.setdefault(instruction, []).append(args)
    assert get["FROM"] == ["python:3.12-slim"]
    assert "requirements.lock ./" in get["COPY"]
    assert any("pip install --requirement requirements.lock" in r for r in get["RUN"])
    # The locked packages are installed before the code is copied (cache), as a root step.
    order = [i for i, _ in steps]
    assert order.index("USER") > max(i for i, (ins, _) in enumerate(steps) if ins == "RUN")
    [user] = get["USER"]
    assert user.split(":")[0] not in ("root", "0")
    assert json.loads(get["ENTRYPOINT"][0]) == ["/app/deploy/run"]
    assert json.loads(get["CMD"][0]) == ["proxy"]
    assert set(get["EXPOSE"][0].split()) == {"11435", "8001", "3001", "8080"}
    env = " ".join(get["ENV"])
    for setting in ("LLAMA_METRICS_PROXY_LISTEN_HOST=0.0.0.0",
                    "LLAMA_METRICS_PROXY_METRICS_HOST=0.0.0.0",
                    "LLAMA_METRICS_PROXY_HISTORY_PATH=/var/lib/llama-metrics/history.db"):
        assert setting in env


def test_dockerignore_lets_through_what_the_image_needs_only() -> None:
    rules = [
        line.strip() for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*"
    allowed = {r[1:] for r in rules if r.startswith("!")}
    assert allowed == {"requirements.lock", "addons", "dashboard", "healthd", "config",
                       "deploy/run"}
    for path in allowed - {"dashboard", "healthd"}:  # those two are being written now
        assert (ROOT / path).exists(), path


# -- systemd ---------------------------------------------------------------------------------


def unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file; a key may repeat (systemd accumulates many of them)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def test_the_three_units_exist() -> None:
    assert [p.name for p in UNITS] == [f"llama-metrics-{n}.service" for n in sorted(OURS)]


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_unit_keys(path: Path) -> None:
    u = unit(path)
    name = path.stem.removeprefix("llama-metrics-")
    assert u["Unit"]["Description"]
    assert "network-online.target" in u["Unit"]["After"][0]
    service = u["Service"]
    assert service["ExecStart"][0].startswith(f"/opt/llama-metrics/deploy/run {name}")
    assert service["WorkingDirectory"] == ["/opt/llama-metrics"]
    assert service["Restart"] == ["on-failure"]
    assert service["RestartPreventExitStatus"] == ["2"]  # a bad setting: no restart loop
    assert service["DynamicUser"] == ["yes"] and service["User"] == ["llama-metrics"]
    assert service["StateDirectory"] == ["llama-metrics"]
    assert service["EnvironmentFile"] == ["-/etc/llama-metrics/env"]
    for key, value in {
        "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "NoNewPrivileges": "yes", "CapabilityBoundingSet": "", "RestrictNamespaces": "yes",
        "SystemCallArchitectures": "native",
    }.items():
        assert service[key] == [value], key
    assert u["Install"]["WantedBy"] == ["multi-user.target"]


def test_units_share_the_history_path() -> None:
    proxy = unit(DEPLOY / "systemd" / "llama-metrics-proxy.service")["Service"]
    dashboard = unit(DEPLOY / "systemd" / "llama-metrics-dashboard.service")["Service"]
    assert "LLAMA_METRICS_PROXY_HISTORY_PATH=%S/llama-metrics/history.db" in proxy["Environment"]
    assert dashboard["ExecStart"][0].endswith("--history %S/llama-metrics/history.db")


@pytest.fixture(scope="module")
def units_here(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The units with /opt/llama-metrics replaced by this checkout, so ExecStart exists."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed; the unit keys are still checked above")
    tmp = tmp_path_factory.mktemp("units")
    for path in UNITS:
        (tmp / path.name).write_text(path.read_text().replace("/opt/llama-metrics", str(ROOT)))
    return sorted(tmp.glob("*.service"))


def test_systemd_analyze_verify(units_here: list[Path]) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, units_here)],
        capture_output=True, text=True, timeout=60,
    )
    # verify exits 0 on unknown keys and bad values, but says so: any word about a unit fails.
    said = [line for line in (result.stdout + result.stderr).splitlines()
            if "llama-metrics" in line]
    assert result.returncode == 0 and said == [], result.stdout + result.stderr


def test_systemd_analyze_security(units_here: list[Path]) -> None:
    for path in units_here:
        result = subprocess.run(
            ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(path)],
            capture_output=True, text=True, timeout=60,
        )
        if "--offline" in result.stderr:
            pytest.skip("systemd-analyze security --offline needs systemd 250 or newer")
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
        assert m, result.stdout + result.stderr
        assert float(m.group(1)) <= 2.5, f"{path.name} exposure {m.group(1)}"


# -- deploy/run ------------------------------------------------------------------------------

RUN = DEPLOY / "run"


def test_run_refuses_an_unknown_process() -> None:
    result = subprocess.run([str(RUN), "proxi"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "unknown process 'proxi'" in result.stderr


def test_run_stops_on_a_bad_setting_with_status_2() -> None:
    result = subprocess.run(
        [str(RUN), "proxy"], capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "LLAMA_METRICS_PROXY_MAX_QUEUE": "lots"},
    )
    assert result.returncode == 2
    assert "proxy.max_queue='lots'" in result.stderr


@pytest.mark.e2e
def test_run_starts_the_proxy_as_the_image_and_units_do(tmp_path: Path) -> None:
    """Settings only from the environment, as the Dockerfile and the units give them; mitmdump
    arguments after `proxy` passed on."""
    sim = SimServer(port=0, tokens=5)
    sim.start()
    history = tmp_path / "state" / "history.db"
    history.parent.mkdir()
    env = {
        "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONUNBUFFERED": "1",
        "OLLAMA_HOST": sim.url,
        "LLAMA_METRICS_PROXY_LISTEN_PORT": "0",
        "LLAMA_METRICS_PROXY_METRICS_PORT": "0",
        "LLAMA_METRICS_PROXY_HISTORY_PATH": str(history),
    }
    process = subprocess.Popen(
        [str(RUN), "proxy", "--set", "flow_detail=0"], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    proxy = Proxy(process)
    try:
        proxy.wait_ready()
        request = urllib.request.Request(
            proxy.url + "/api/generate",
            data=b'{"model": "llama3.2", "prompt": "hi", "stream": false}',
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.status == 200
            r.read()
        samples = proxy.wait_counted(1)
        total = sum(v for (n, _), v in samples.items() if n == "ollama_proxy_requests_total")
        assert total == 1
        assert history.exists(), proxy.log
        assert (tmp_path / ".mitmproxy").is_dir()  # mitmproxy's state under HOME
    finally:
        proxy.stop()
        sim.stop()
