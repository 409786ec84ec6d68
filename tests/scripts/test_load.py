"""Tests for scripts/load.py: schedules, percentile and summary maths, runs against the sim."""

from __future__ import annotations

import io
import itertools
import json
import signal
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ollama_sim import SimServer
from scripts import load
from tests.support.processes import run_proxy
from tests.support.sim import sim_fixture

ROOT = Path(__file__).resolve().parents[2]




def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


# ---------------------------------------------------------------------------------------------
# Schedules


@pytest.mark.parametrize("rate, duration, count", [
    (10, 2, 20), (3, 1, 3), (2.5, 2, 5), (0.5, 3, 2), (7, 0.1, 1), (0, 5, 0),
])
def test_constant_spaces_arrivals_evenly(rate: float, duration: float, count: int) -> None:
    times = load.constant(rate, duration)
    assert len(times) == count
    if times:
        assert times[0] == 0
        assert times[-1] < duration
    assert gaps(times) == pytest.approx([1 / rate] * (count - 1) if rate else [])


@pytest.mark.parametrize("size, period, duration, bursts", [
    (5, 1, 3, 3), (1, 0.5, 2, 4), (4, 2, 2.5, 2), (3, 10, 1, 1),
])
def test_burst_sends_groups_every_period(size: int, period: float, duration: float,
                                         bursts: int) -> None:
    times = load.burst(size, period, duration)
    assert len(times) == size * bursts
    assert sorted(set(times)) == pytest.approx([k * period for k in range(bursts)])
    assert all(times.count(t) == size for t in set(times))


def test_ramp_up_holds_the_mean_rate_and_quickens() -> None:
    times = load.ramp(2, 18, 10)
    assert len(times) == 100  # (2 + 18) / 2 requests/s for 10 s
    assert times[0] == 0 and times[-1] < 10
    spacing = gaps(times)
    assert all(b < a for a, b in itertools.pairwise(spacing))
    assert times[1] == pytest.approx((-2 + (4 + 3.2) ** 0.5) / 1.6)  # 2t + 0.8t^2 = 1
    assert spacing[-1] == pytest.approx(1 / 18, rel=0.1)
    assert sum(t < 5 for t in times) == 30  # N(5) = 2*5 + 0.8*5^2


def test_ramp_down_and_from_zero() -> None:
    down = load.ramp(10, 0, 4)
    assert len(down) == 20
    assert all(b > a for a, b in itertools.pairwise(gaps(down)))
    up = load.ramp(0, 10, 4)
    assert len(up) == 20
    assert up[1] == pytest.approx((1 / (10 / 8)) ** 0.5)  # N(t) = 10/8 t^2 reaches 1
    assert load.ramp(5, 5, 2) == pytest.approx(load.constant(5, 2))


def test_spike_multiplies_the_rate_in_the_middle() -> None:
    times = load.spike(2, 5, 2, 10)  # 2/s, 10/s from 4 s to 6 s
    assert len(times) == 2 * 8 + 10 * 2
    inside = [t for t in times if 4 <= t < 6]
    assert len(inside) == 20
    assert gaps(inside) == pytest.approx([0.1] * 19)
    assert gaps([t for t in times if t < 4]) == pytest.approx([0.5] * 7)
    assert gaps([t for t in times if t >= 6]) == pytest.approx([0.5] * 7)


@pytest.mark.parametrize("call", [
    lambda: load.burst(0, 1, 1), lambda: load.burst(1, 0, 1), lambda: load.ramp(-1, 1, 1),
    lambda: load.spike(1, 2, 5, 4), lambda: load.piecewise([(1, -1)]),
])
def test_schedules_refuse_bad_shapes(call: Any) -> None:
    with pytest.raises(ValueError):
        call()


@pytest.mark.parametrize("argv, count", [
    (["--rate", "4", "--requests", "10"], 10),
    (["--pattern", "burst", "--burst", "4", "--every", "1", "--requests", "10"], 10),
    (["--rate", "4", "--duration", "2", "--requests", "100"], 8),
    (["--rate", "4"], 40),  # 10 s by default
])
def test_requests_and_duration_bound_the_schedule(argv: list[str], count: int) -> None:
    assert len(load.parse_args(argv).times) == count


@pytest.mark.parametrize("argv", [
    ["--pattern", "ramp", "--requests", "5"], ["--models", "a=x"], ["--models", "a=0"],
    ["--priorities", "=1"], ["--stream-fraction", "1.5"], ["--concurrency", "0"],
    ["--duration", "0"], ["--rate", "nan"], ["--prompt-words", "ten"],
    ["--prompt-words", "20=1,-5=1"], ["--prompt-words", "20=0"],
])
def test_bad_options_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        load.parse_args(argv)
    assert exc.value.code == 2


def test_weights_parse() -> None:
    assert load.parse_weights("a=3, b=1,c", "--models") == {"a": 3.0, "b": 1.0, "c": 1.0}
    assert load.parse_sizes("20") == {20: 1.0}
    assert load.parse_sizes("0=1,2000=3") == {0: 1.0, 2000: 3.0}


def test_prompt_sizes_are_drawn_by_weight() -> None:
    args = load.parse_args(["--rate", "100", "--duration", "4", "--prompt-words", "5=3,50=1"])
    words = Counter(len(plan.prompt.split()) for plan in load.draw(args.times, args))
    assert set(words) == {5, 50}
    assert 0.65 < words[5] / 400 < 0.85  # 3 in 4, seeded
    fixed = load.parse_args(["--requests", "3", "--prompt-words", "7"])
    assert [len(p.prompt.split()) for p in load.draw(fixed.times, fixed)] == [7, 7, 7]


# ---------------------------------------------------------------------------------------------
# Summary maths


@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=60), st.integers(1, 99))
def test_percentile_matches_the_inclusive_reference(values: list[float], q: int) -> None:
    reference = statistics.quantiles(values, n=100, method="inclusive")[q - 1]
    assert load.percentile(values, q) == pytest.approx(reference, rel=1e-9, abs=1e-6)


def test_percentile_edges() -> None:
    assert load.percentile([], 50) is None
    assert load.percentile([4.0], 99) == 4.0
    assert load.percentile([3.0, 1.0, 2.0], 0) == 1.0
    assert load.percentile([3.0, 1.0, 2.0], 100) == 3.0
    assert load.percentile(list(range(1, 101)), 95) == pytest.approx(95.05)


def test_summary_counts_errors_by_kind_and_measures_only_successes() -> None:
    results = [
        load.Result(None, 0.0, 1.0, ttft=0.2, tokens=41, prompt_tokens=12),  # 40 in 0.8 s
        load.Result(None, 0.5, 2.0, ttft=None, tokens=20),  # not streamed: 20 in 2 s
        load.Result("status 500", 0.0, 0.1),
        load.Result("status 500", 0.0, 0.1),
        load.Result("timeout", 0.0, 9.0),
    ]
    s = load.summarize(results, elapsed=2.5, scheduled=6)
    assert (s["scheduled"], s["requests"], s["ok"]) == (6, 5, 2)
    assert s["errors"] == {"status 500": 2, "timeout": 1}
    assert s["rate"] == 2.0
    assert s["waited"] == 1
    assert s["tokens"] == 61
    assert s["prompt_tokens"] == 12
    assert s["ttft_s"]["p50"] == 0.2
    assert s["duration_s"]["p50"] == 1.5
    assert s["tokens_per_s"]["p50"] == pytest.approx((50 + 10) / 2)
    table = load.render(s)
    assert "errors    3 (status 500: 2, timeout: 1)" in table
    assert "5 of 6 scheduled" in table
    assert "tokens    61 generated, 12 in prompts" in table


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("out, expected", [
    (Terminal(), "\r[##########          ] 5/10 sent  3 ok  1 errors  1 in flight  2 waiting  "
                 "1.0s\x1b[K\n"),
    (io.StringIO(), "[##########          ] 5/10 sent  3 ok  1 errors  1 in flight  2 waiting  "
                    "1.0s\n"),
])
def test_progress_redraws_on_a_terminal_and_writes_lines_elsewhere(
        out: io.StringIO, expected: str) -> None:
    progress = load.Progress(out, total=10, duration=None)
    progress.show(progress.line(5, 3, 1, 1, 2, 1.0))
    progress.end()
    assert out.getvalue() == expected
    assert progress.interval == (0.2 if isinstance(out, Terminal) else 5.0)


# ---------------------------------------------------------------------------------------------
# Against the simulator


sim = sim_fixture(scope="function", tokens=8, token_rate=200, seed=3)


def run_load(*argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "load.py"), *argv],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_a_run_against_the_simulator_matches_what_it_served(sim: Any, tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    done = run_load("--url", sim.url, "--rate", "15", "--duration", "2", "--seed", "5",
                    "--endpoint", "mix", "--stream-fraction", "0.7",
                    "--models", "llama3.2=3,qwen3=1", "--priorities", "high=1,normal=8,low=1",
                    "--fault-fraction", "0.25", "--concurrency", "4", "--prompt-words",
                    "3=1,300=1", "--json", str(out))
    assert done.returncode == 0, done.stderr
    summary = json.loads(out.read_text())
    reports = sim.reports
    assert summary["requests"] == summary["scheduled"] == len(reports) == 30
    failed = sum(1 for r in reports if r["status"] == 500)
    assert 0 < failed < 30
    assert 0 < failed < 12
    assert summary["errors"] == {"status 500": failed}
    assert summary["ok"] == 30 - failed
    assert summary["tokens"] == sum(r["eval_count"] for r in reports if r["status"] == 200)
    # A chat prompt of N words is N + 7 tokens to the simulator (role and template overhead).
    assert {r["prompt_eval_count"] for r in reports if r["status"] == 200} == {10, 307}
    assert summary["prompt_tokens"] == sum(r["prompt_eval_count"] for r in reports
                                           if r["status"] == 200)
    assert {r["endpoint"] for r in reports} == {"/api/chat", "/v1/chat/completions"}
    assert {r["model"] for r in reports} == {"llama3.2", "qwen3"}
    assert {r["stream"] for r in reports} == {True, False}
    assert summary["ttft_s"]["p50"] is not None
    assert summary["ttft_s"]["p50"] <= summary["duration_s"]["p50"]
    assert summary["tokens_per_s"]["p99"] > 0
    assert summary["stopped"] is False
    assert "requests  30 of 30 scheduled" in done.stdout
    assert "30/30 sent" in done.stderr.splitlines()[-1]  # not a terminal: whole lines


def test_ctrl_c_stops_at_once_and_still_summarises(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    # Each answer takes 50 s to stream: only an interrupt ends this run quickly.
    with SimServer(port=0, tokens=100, token_rate=2) as slow:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "load.py"), "--url", slow.url, "--rate", "1",
             "--duration", "60", "--concurrency", "1", "--json", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            slow.wait_for_connections(1, timeout=10)  # the first request is streaming
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 130, stderr
        summary = json.loads(out.read_text())
        assert summary["stopped"] is True
        assert summary["requests"] == 1
        assert summary["errors"] == {"cancelled": 1}
        assert "errors    1 (cancelled: 1)" in stdout
        assert [r["outcome"] for r in slow.wait_for_reports(1)] == ["client_gone"]


def test_through_the_proxy_every_request_is_counted(sim: Any, tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    # The proxy asks for an access token: load.py sends the one its configuration names.
    token = "load-test-token-0123456789"
    config = tmp_path / "llama-metrics.yml"
    config.write_text(f"security:\n  access_token: {token}\n")
    argv = ["--pattern", "burst", "--burst", "6", "--every", "0.2", "--requests", "12",
            "--endpoint", "mix", "--priorities", "high=1,normal=1,low=1", "--fault-fraction",
            "0.3", "--json", str(out), "--config", str(config)]
    args = load.parse_args(argv)
    priorities = Counter(plan.priority for plan in load.draw(args.times, args))
    assert len(priorities) == 3
    # With a concurrency limit every request passes the queue, which counts it by X-Priority.
    with run_proxy(sim.url, "--set", "max_concurrency=2",
                   env={"LLAMA_METRICS_SECURITY_ACCESS_TOKEN": token}) as proxy:
        done = run_load("--url", proxy.url, *argv)
        assert done.returncode == 0, done.stderr
        summary = json.loads(out.read_text())
        samples = proxy.wait_counted(12)
    counted = sum(v for (name, _), v in samples.items()
                  if name == "ollama_proxy_requests_total")
    failed = sum(v for (name, labels), v in samples.items()
                 if name == "ollama_proxy_requests_total" and ("status", "500") in labels)
    assert summary["requests"] == counted == len(sim.reports) == 12
    assert 0 < failed < 12
    assert summary["errors"] == {"status 500": failed}
    queued = {dict(labels)["priority"]: v for (name, labels), v in samples.items()
              if name == "ollama_proxy_queue_wait_seconds_count"}
    assert queued == priorities
