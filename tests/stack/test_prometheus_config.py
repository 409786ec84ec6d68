"""config/prometheus.yml, config/alerts.yml (with its promtool unit tests) and
config/alertmanager.yml: valid for the tools, and naming only series we export."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.stack.catalogue import problems
from tests.stack.tools import (
    ALERTMANAGER_YML,
    ALERTS_TEST_YML,
    ALERTS_YML,
    COMPOSE_PROMETHEUS_YML,
    PROMETHEUS_YML,
    alert_rules,
    load_yaml,
    run,
    tool,
)

JOBS = {"llama-metrics-proxy", "llama-metrics-healthd", "llama-metrics-dashboard", "prometheus"}


def test_promtool_check_config() -> None:
    out = run([tool("promtool", "prometheus"), "check", "config", str(PROMETHEUS_YML)])
    assert "1 rule files found" in out.stdout


def test_promtool_check_config_of_the_compose_variant(tmp_path: Path) -> None:
    # In the container alerts.yml is mounted beside it; here it is copied beside it.
    shutil.copy(COMPOSE_PROMETHEUS_YML, tmp_path / "prometheus.yml")
    shutil.copy(ALERTS_YML, tmp_path / "alerts.yml")
    run([tool("promtool", "prometheus"), "check", "config", str(tmp_path / "prometheus.yml")])


def test_promtool_check_rules() -> None:
    out = run([tool("promtool", "prometheus"), "check", "rules", str(ALERTS_YML)])
    assert f"{len(alert_rules())} rules found" in out.stdout


def test_promtool_unit_tests_of_the_rules() -> None:
    run([tool("promtool", "prometheus"), "test", "rules", str(ALERTS_TEST_YML)])


def test_promtool_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    """The unit tests are not vacuous: a rule with a wrong threshold fails them."""
    broken = ALERTS_YML.read_text().replace(") > 0.05", ") > 0.5", 1)
    assert broken != ALERTS_YML.read_text()
    (tmp_path / "alerts.yml").write_text(broken)
    shutil.copy(ALERTS_TEST_YML, tmp_path / "alerts_test.yml")
    result = subprocess.run(
        [tool("promtool", "prometheus"), "test", "rules", str(tmp_path / "alerts_test.yml")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "OllamaProxyErrorRatioHigh" in result.stdout + result.stderr


def scrape_jobs(path: Path) -> dict[str, list[dict]]:
    return {job["job_name"]: job["static_configs"] for job in load_yaml(path)["scrape_configs"]}


def test_scrape_jobs_and_instance_names() -> None:
    jobs = scrape_jobs(PROMETHEUS_YML)
    assert set(jobs) == JOBS
    targets = {name: [t for sc in configs for t in sc["targets"]] for name, configs in jobs.items()}
    assert targets["llama-metrics-proxy"] == ["127.0.0.1:8001"]
    assert targets["llama-metrics-healthd"] == ["127.0.0.1:8080"]
    assert targets["llama-metrics-dashboard"] == ["127.0.0.1:3001"]
    # One instance name for the three services of a machine, so their series line up.
    instances = {
        sc["labels"]["instance"] for name, configs in jobs.items() if name != "prometheus"
        for sc in configs
    }
    assert instances == {"local"}


def test_compose_variant_has_the_same_jobs_instances_and_rules() -> None:
    config, compose = load_yaml(PROMETHEUS_YML), load_yaml(COMPOSE_PROMETHEUS_YML)
    assert compose["rule_files"] == config["rule_files"] == ["alerts.yml"]
    assert compose["global"] == config["global"]

    def shape(path: Path) -> dict[str, list]:
        return {name: [sc.get("labels") for sc in configs]
                for name, configs in scrape_jobs(path).items()}

    assert shape(COMPOSE_PROMETHEUS_YML) == shape(PROMETHEUS_YML)
    targets = {name: configs[0]["targets"] for name, configs in
               scrape_jobs(COMPOSE_PROMETHEUS_YML).items()}
    assert targets["llama-metrics-proxy"] == ["proxy:8001"]
    assert targets["llama-metrics-healthd"] == ["healthd:8080"]
    assert targets["llama-metrics-dashboard"] == ["dashboard:3001"]


def test_alertmanager_target_is_local_9093() -> None:
    alerting = load_yaml(PROMETHEUS_YML)["alerting"]["alertmanagers"]
    assert [t for am in alerting for sc in am["static_configs"] for t in sc["targets"]] == [
        "127.0.0.1:9093"
    ]


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_rule_shape(rule: dict) -> None:
    assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), "every rule waits with for:"
    assert rule["labels"]["severity"] in ("critical", "warning")
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description"}
    # Each says where: the instance (and model or gpu where the rule keeps them).
    assert "$labels.instance" in annotations["summary"] + annotations["description"]


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_rule_names_only_exported_series(rule: dict) -> None:
    assert problems(rule["expr"]) == []


def test_alert_names_are_unique() -> None:
    names = [r["alert"] for r in alert_rules()]
    assert len(names) == len(set(names))


def test_every_rule_has_unit_tests_where_it_fires_and_where_it_does_not() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(ALERTS_TEST_YML)["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert names - fires == set(), "rules never tested firing"
    assert names - quiet == set(), "rules never tested staying quiet"


# -- Alertmanager example --------------------------------------------------------------------


def test_amtool_check_config() -> None:
    run([tool("amtool", "prometheus-alertmanager"), "check-config", str(ALERTMANAGER_YML)])


def test_alertmanager_routes_by_severity_to_webhooks() -> None:
    config = load_yaml(ALERTMANAGER_YML)
    receivers = {r["name"]: r for r in config["receivers"]}
    for receiver in receivers.values():
        assert receiver["webhook_configs"], receiver["name"]
    routes = {tuple(r["matchers"]): r["receiver"] for r in config["route"]["routes"]}
    assert routes == {('severity="critical"',): "webhook-critical",
                      ('severity="warning"',): "webhook-warning"}
    assert config["route"]["receiver"] in receivers
    assert set(routes.values()) <= set(receivers)
    assert "instance" in config["route"]["group_by"]


def test_inhibit_rules_name_existing_alerts() -> None:
    names = {r["alert"] for r in alert_rules()}
    for rule in load_yaml(ALERTMANAGER_YML)["inhibit_rules"]:
        assert rule["equal"] == ["instance"]
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            m = re.fullmatch(r'alertname(=~|=)"(.*)"', matcher)
            assert m, matcher
            named = set(m.group(2).split("|"))
            assert named <= names, f"{matcher}: {named - names} are not in alerts.yml"


def test_amtool_routes_each_severity(tmp_path: Path) -> None:
    amtool = tool("amtool", "prometheus-alertmanager")
    for severity, receiver in (("critical", "webhook-critical"), ("warning", "webhook-warning")):
        out = run([amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_YML}",
                   "alertname=OllamaUpstreamDown", f"severity={severity}"], cwd=tmp_path)
        assert out.stdout.strip() == receiver
