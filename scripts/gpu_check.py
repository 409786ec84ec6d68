#!/usr/bin/env python3
"""One prepared check on a machine with a real NVIDIA GPU: the proxy's gpu_* and energy series
against what nvidia-smi reports at the same moments.

Starts the Ollama simulator and the proxy (``mitmdump -s addons/llama_metrics.py``, reading
the GPUs through the real nvidia-ml-py), sends streamed chats with idle gaps between them, and
every ``--every`` seconds runs ``nvidia-smi --query-gpu=...`` and scrapes the proxy's /metrics
back to back. It prints the GPU model and driver and a side-by-side table, then checks:

- power draw, memory used, utilisation and temperature agree within ``TOLERANCES``;
- the proxy's ``gpu_energy_joules_total`` grew as nvidia-smi's ``total_energy_consumption``
  did between the first and last moment (within one proxy poll of the highest draw, plus 2 %),
  and as the power draw integrated over the moments (within 25 %: instant readings);
- every joule went to a request or to idle (``gpu_energy = idle + energy_joules_total``).

Exit 0 when all agree, 1 when something disagrees (each named), 2 when the check cannot run:
no ``nvidia-smi``, no driver, no GPU, or the test suite's fake pynvml on ``PYTHONPATH``. It
needs no network and takes about a minute (under three minutes in all, or it stops).

    .venv/bin/python scripts/gpu_check.py
    .venv/bin/python scripts/gpu_check.py --seconds 90 --every 5
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

logger = logging.getLogger("gpu_check")

ROOT = Path(__file__).resolve().parent.parent
FAKE_NVML = ROOT / "tests" / "support" / "fake_nvml"
FIELDS = ("index", "name", "driver_version", "power.draw", "memory.used", "utilization.gpu",
          "temperature.gpu", "total_energy_consumption")
ENERGY_FIELD = "total_energy_consumption"
DEADLINE_S = 170.0  # the whole run, start to report
MIB = 1024 * 1024

# What "agree" means for two readings a few milliseconds apart (each: absolute, relative).
TOLERANCES: dict[str, tuple[float, float]] = {
    "power_w": (25.0, 0.15),  # power moves within a second; NVML averages over ~1 s
    "memory_mib": (256.0, 0.02),
    "utilization_pct": (25.0, 0.0),  # a sampled percentage of the last period
    "temperature_c": (3.0, 0.0),
}
TOLERANCE_WORDS = ("power ±25 W or 15 %, memory used ±256 MiB or 2 %, utilisation ±25 points, "
                   "temperature ±3 °C")
ENERGY_RELATIVE = 0.02
INTEGRATED_RELATIVE = 0.25


class CannotRun(Exception):
    """The machine cannot be checked (no GPU, driver or nvidia-smi): exit 2, not a failure."""


# -- nvidia-smi -----------------------------------------------------------------------------


def number(text: str) -> float | None:
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        return None  # "[N/A]", "[Not Supported]", "[Unknown Error]"
    return value if math.isfinite(value) else None


def parse_smi(text: str, fields: Sequence[str]) -> list[dict[str, Any]]:
    """``--format=csv,noheader,nounits`` lines into one dict a GPU (numbers as floats)."""
    rows = []
    for line in text.strip().splitlines():
        values = [v.strip() for v in line.split(",")]
        if len(values) != len(fields):
            raise CannotRun(f"nvidia-smi printed {line!r}, expected {len(fields)} fields")
        row: dict[str, Any] = dict(zip(fields, values, strict=True))
        for key in fields:
            if key not in ("name", "driver_version"):
                row[key] = number(row[key])
        rows.append(row)
    return rows


def run_smi(fields: Sequence[str], binary: str = "nvidia-smi") -> str:
    path = shutil.which(binary)
    if path is None:
        raise CannotRun(f"no NVIDIA GPU to check: {binary} is not on PATH (no driver installed)")
    try:
        done = subprocess.run(
            [path, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        raise CannotRun(f"{path} did not answer in 20 s") from None
    if done.returncode != 0:
        said = (done.stdout + done.stderr).strip()
        raise CannotRun(f"no NVIDIA GPU to check: {path} exited {done.returncode}: {said}")
    return done.stdout


class Smi:
    """nvidia-smi at each moment; without ``total_energy_consumption`` on this driver, the
    energy is left out of its rows (and read from NVML by ``Nvml`` instead)."""

    def __init__(self, binary: str = "nvidia-smi") -> None:
        self.binary = binary
        self.fields: tuple[str, ...] = FIELDS
        try:
            rows = self.read()
        except CannotRun as exc:
            if "not a valid field" not in str(exc) or ENERGY_FIELD not in str(exc):
                raise
            self.fields = tuple(f for f in FIELDS if f != ENERGY_FIELD)
            rows = self.read()
        if not rows:
            raise CannotRun("no NVIDIA GPU to check: nvidia-smi lists none")
        self.first = rows

    @property
    def has_energy(self) -> bool:
        return ENERGY_FIELD in self.fields

    def read(self) -> list[dict[str, Any]]:
        return parse_smi(run_smi(self.fields, self.binary), self.fields)


class Nvml:
    """This script's own NVML (the library the proxy reads): its energy counter in joules."""

    def __init__(self, allow_fake: bool) -> None:
        try:
            import pynvml
        except ImportError as exc:
            raise CannotRun(f"nvidia-ml-py is not installed (requirements.lock): {exc}") from exc
        where = Path(getattr(pynvml, "__file__", "") or "").resolve()
        if FAKE_NVML in where.parents and not allow_fake:
            raise CannotRun(f"the test suite's fake pynvml ({where}) is on PYTHONPATH: unset it")
        try:
            pynvml.nvmlInit()
            count = int(pynvml.nvmlDeviceGetCount())
        except pynvml.NVMLError as exc:
            raise CannotRun(f"no NVIDIA GPU to check: NVML: {exc}") from exc
        if count == 0:
            raise CannotRun("no NVIDIA GPU to check: NVML sees none")
        self.module = pynvml
        self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]

    def energy_j(self) -> dict[int, float | None]:
        out: dict[int, float | None] = {}
        for index, handle in enumerate(self.handles):
            try:
                out[index] = self.module.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0
            except (self.module.NVMLError, AttributeError):
                out[index] = None  # before Volta
        return out


# -- the proxy's side -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def proxy_gpus(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]
               ) -> dict[int, dict[str, Any]]:
    """Per GPU index: the proxy's gpu_* readings and its energy counter (summed over sources)."""
    out: dict[int, dict[str, Any]] = {}
    names = {"ollama_proxy_gpu_power_watts": "power_w",
             "ollama_proxy_gpu_memory_used_bytes": "memory_mib",
             "ollama_proxy_gpu_utilization_percent": "utilization_pct",
             "ollama_proxy_gpu_temperature_celsius": "temperature_c",
             "ollama_proxy_gpu_energy_joules_total": "energy_j"}
    for (name, labels), value in samples.items():
        key = names.get(name)
        if key is None:
            continue
        label = dict(labels)
        gpu = out.setdefault(int(label["gpu"]), {"name": label.get("name"), "sources": set()})
        if key == "energy_j":
            gpu["energy_j"] = gpu.get("energy_j", 0.0) + value
            gpu["sources"].add(label.get("source", "?"))
        else:
            gpu[key] = value / MIB if key == "memory_mib" else value
    return out


def joules_per_token(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]
                     ) -> dict[str, float | None]:
    """Attributed joules over generated tokens, by model, as docs/energy.md's PromQL divides."""
    joules: dict[str, float] = {}
    tokens: dict[str, float] = {}
    for (name, labels), value in samples.items():
        into = {"ollama_proxy_energy_joules_total": joules,
                "ollama_proxy_generated_tokens_total": tokens}.get(name)
        if into is not None:
            model = dict(labels).get("model", "")
            into[model] = into.get(model, 0.0) + value
    return {m: (j / tokens[m] if tokens.get(m) else None) for m, j in sorted(joules.items())}


def ledger_totals(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]
                  ) -> tuple[float, float, float]:
    """(GPU, idle, attributed) joules since the proxy started."""
    def total(name: str) -> float:
        return math.fsum(v for (n, _), v in samples.items() if n == "ollama_proxy_" + name)
    return (total("gpu_energy_joules_total"), total("gpu_idle_energy_joules_total"),
            total("energy_joules_total"))


# -- one run --------------------------------------------------------------------------------


@dataclass
class Moment:
    at: float  # seconds since the first moment
    smi: list[dict[str, Any]]
    nvml_energy: dict[int, float | None]
    proxy: dict[int, dict[str, Any]]
    totals: tuple[float, float, float]


@dataclass
class Report:
    moments: list[Moment] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def within(a: float | None, b: float | None, tolerance: tuple[float, float]) -> bool:
    if a is None or b is None:
        return a is None and b is None
    absolute, relative = tolerance
    return abs(a - b) <= max(absolute, relative * max(abs(a), abs(b)))


SMI_KEYS = {"power_w": "power.draw", "memory_mib": "memory.used",
            "utilization_pct": "utilization.gpu", "temperature_c": "temperature.gpu"}


def compare_readings(moments: Sequence[Moment]) -> list[str]:
    """Each moment's gauges, nvidia-smi against the proxy, by ``TOLERANCES``."""
    problems = []
    for moment in moments:
        for row in moment.smi:
            index = int(row["index"])
            mine = moment.proxy.get(index)
            if mine is None:
                problems.append(f"{moment.at:.0f} s: GPU {index} ({row['name']}) is not in "
                                "the proxy's gpu_* series")
                continue
            if mine["name"] != row["name"]:
                problems.append(f"GPU {index}: proxy names it {mine['name']!r}, nvidia-smi "
                                f"{row['name']!r}")
            for key, smi_key in SMI_KEYS.items():
                theirs, ours = row[smi_key], mine.get(key)
                if theirs is None:
                    continue  # nvidia-smi has no such reading here: nothing to compare
                if not within(theirs, ours, TOLERANCES[key]):
                    problems.append(f"{moment.at:.0f} s: GPU {index} {key}: nvidia-smi "
                                    f"{theirs:g}, proxy {ours}")
    return problems


def smi_row(moment: Moment, index: int) -> dict[str, Any]:
    return next((r for r in moment.smi if int(r["index"]) == index), {})


def smi_scale(moments: Sequence[Moment], index: int) -> tuple[float, str] | None:
    """Joules per unit of nvidia-smi's ``total_energy_consumption`` (None: it has none): the
    unit (mJ, as NVML's, or J) is the one the power draw integrated over the run agrees with."""
    first, last = smi_row(moments[0], index), smi_row(moments[-1], index)
    if first.get(ENERGY_FIELD) is None or last.get(ENERGY_FIELD) is None:
        return None
    raw = last[ENERGY_FIELD] - first[ENERGY_FIELD]
    integrated = integrate_power(moments, index)
    if abs(raw / 1000.0 - integrated) <= abs(raw - integrated):
        return 0.001, "mJ"
    return 1.0, "J"


def integrate_power(moments: Sequence[Moment], index: int) -> float:
    joules = 0.0
    for a, b in zip(moments, moments[1:], strict=False):
        pa = next((r["power.draw"] for r in a.smi if int(r["index"]) == index), None)
        pb = next((r["power.draw"] for r in b.smi if int(r["index"]) == index), None)
        known = [p for p in (pa, pb) if p is not None]
        if known:
            joules += sum(known) / len(known) * (b.at - a.at)
    return joules


def compare_energy(moments: Sequence[Moment], poll_s: float, has_smi_energy: bool
                   ) -> tuple[list[str], list[str], list[list[str]]]:
    """(problems, notes, table rows) for each GPU's energy from the first to the last moment."""
    problems, notes, rows = [], [], []
    first, last = moments[0], moments[-1]
    span = last.at - first.at
    for row in last.smi:
        index = int(row["index"])
        p0, p1 = first.proxy.get(index, {}), last.proxy.get(index, {})
        if "energy_j" not in p0 or "energy_j" not in p1:
            problems.append(f"GPU {index}: no ollama_proxy_gpu_energy_joules_total")
            continue
        proxy_j = p1["energy_j"] - p0["energy_j"]
        integrated = integrate_power(moments, index)
        peak = max((r["power.draw"] or 0.0) for m in moments for r in m.smi
                   if int(r["index"]) == index)
        # The proxy's counter moves at its polls: each end lags by up to one poll.
        allowed = poll_s * max(peak, 1.0) + ENERGY_RELATIVE * abs(proxy_j)
        source = ",".join(sorted(p1.get("sources", ()))) or "?"
        reference, what = None, ""
        scale = smi_scale(moments, index) if has_smi_energy else None
        if scale is not None:
            reference = (row[ENERGY_FIELD] - smi_row(first, index)[ENERGY_FIELD]) * scale[0]
            what = f"nvidia-smi {ENERGY_FIELD} (read as {scale[1]})"
        else:
            e0, e1 = first.nvml_energy.get(index), last.nvml_energy.get(index)
            if e0 is not None and e1 is not None:
                reference, what = e1 - e0, "NVML's counter read by this script"
                notes.append(f"GPU {index}: nvidia-smi has no {ENERGY_FIELD} here; the energy "
                             "is compared with NVML's counter as this script reads it")
        if reference is None:
            notes.append(f"GPU {index}: no energy counter (before Volta): the proxy integrates "
                         "power draw; compared with the power draw integrated here only")
        elif abs(proxy_j - reference) > allowed:
            problems.append(f"GPU {index}: over {span:.0f} s the proxy counted {proxy_j:.1f} J, "
                            f"{what} {reference:.1f} J (allowed ±{allowed:.1f} J)")
        if not within(proxy_j, integrated, (poll_s * max(peak, 1.0), INTEGRATED_RELATIVE)):
            problems.append(f"GPU {index}: over {span:.0f} s the proxy counted {proxy_j:.1f} J, "
                            f"power draw integrated {integrated:.1f} J")
        if reference is not None and source != "counter":
            problems.append(f"GPU {index}: the GPU has an energy counter but the proxy's source "
                            f"is {source!r}")
        rows.append([str(index), f"{span:.0f} s", fmt(reference), fmt(integrated),
                     fmt(proxy_j), source, what or "power draw integrated"])
    return problems, notes, rows


def compare_ledger(moment: Moment) -> list[str]:
    gpu, idle, attributed = moment.totals
    if not gpu > 0:
        return ["the proxy counted no GPU energy"]
    out = []
    if abs(gpu - idle - attributed) > 1e-6 * gpu + 1e-6:
        out.append(f"GPU energy {gpu:.3f} J is not idle {idle:.3f} J + attributed "
                   f"{attributed:.3f} J")
    if not attributed > 0:
        out.append("no energy was attributed to the requests sent")
    return out


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(c).rjust(w) for c, w in zip(line, widths, strict=True))
             for line in (header, *rows)]
    return "\n".join(lines)


def readings_table(moments: Sequence[Moment]) -> str:
    rows = []
    for m in moments:
        for r in m.smi:
            index = int(r["index"])
            p = m.proxy.get(index, {})
            scale = smi_scale(moments, index)
            e0 = smi_row(moments[0], index).get(ENERGY_FIELD)
            smi_e = None if scale is None or r.get(ENERGY_FIELD) is None or e0 is None else (
                (r[ENERGY_FIELD] - e0) * scale[0])
            p0 = moments[0].proxy.get(index, {}).get("energy_j")
            rows.append([f"{m.at:.0f}", str(index),
                         fmt(r["power.draw"]), fmt(p.get("power_w")),
                         fmt(r["memory.used"], 0), fmt(p.get("memory_mib"), 0),
                         fmt(r["utilization.gpu"], 0), fmt(p.get("utilization_pct"), 0),
                         fmt(r["temperature.gpu"], 0), fmt(p.get("temperature_c"), 0),
                         fmt(smi_e), fmt(None if p0 is None or "energy_j" not in p else
                                         p["energy_j"] - p0)])
    return table(["t s", "gpu", "W smi", "W proxy", "MiB smi", "MiB proxy", "% smi",
                  "% proxy", "°C smi", "°C proxy", "J smi*", "J proxy"], rows)


# -- processes and load ---------------------------------------------------------------------


@contextmanager
def started(args: list[str], ready_url: str, what: str, env: dict[str, str]) -> Iterator[None]:
    """A child process, until ``ready_url`` answers; stopped (SIGTERM, then SIGKILL) after."""
    log = open(os.devnull, "w")  # noqa: SIM115  (closed below)
    proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(ready_url, timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise CannotRun(f"{what} did not start ({' '.join(args)})") from None
                time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@contextmanager
def simulator(env: dict[str, str]) -> Iterator[str]:
    """The Ollama simulator: 64 tokens at 64 a second, a second a chat; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, str(ROOT / "scripts" / "ollama_sim.py"), "--port", str(port),
            "--tokens", "64", "--token-rate", "64", "--seed", "1"]
    with started(args, url + "/api/version", "the Ollama simulator", env):
        yield url


@contextmanager
def proxy_process(upstream: str, poll_s: float, env: dict[str, str]
                  ) -> Iterator[tuple[str, str]]:
    """mitmdump with our addons in front of ``upstream``; yields its URL and metrics URL."""
    port, metrics = free_port(), free_port()
    mitmdump = Path(sys.executable).parent / "mitmdump"
    args = [str(mitmdump), "--mode", f"reverse:{upstream}", "--listen-host", "127.0.0.1",
            "-p", str(port), "-s", str(ROOT / "addons" / "llama_metrics.py"),
            "--set", f"metrics_port={metrics}", "--set", f"resources_interval_seconds={poll_s}",
            "--set", "history_path=", "--set", "flow_detail=0"]
    url = f"http://127.0.0.1:{metrics}"
    with started(args, url + "/health", "the proxy", env):
        yield f"http://127.0.0.1:{port}", url


def load(proxy_url: str, stop: threading.Event, sent: list[int], worker: int) -> None:
    """Streamed chats with a gap after each (0, 1 or 2 s): idle intervals between them."""
    body = (b'{"model":"llama3.2","stream":true,'
            b'"messages":[{"role":"user","content":"Why is the sky blue?"}]}')
    while not stop.is_set():
        request = urllib.request.Request(proxy_url + "/api/chat", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                r.read()
            sent[worker] += 1
        except (OSError, urllib.error.URLError) as exc:
            logger.warning("a chat failed: %s", exc)
        stop.wait(worker % 3)


def run(args: argparse.Namespace, smi: Smi, nvml: Nvml) -> Report:
    began = time.monotonic()
    report = Report()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with simulator(env) as sim_url:
        with proxy_process(sim_url, args.poll, env) as (proxy_url, metrics_url):
            # Two polls: the first is only the energy meter's baseline.
            deadline = time.monotonic() + 30
            while not ledger_totals(scrape(metrics_url))[0] > 0:
                if time.monotonic() > deadline:
                    report.problems.append("the proxy exported no GPU energy in 30 s")
                    return report
                time.sleep(args.poll / 2)
            stop, sent = threading.Event(), [0] * args.workers
            workers = [threading.Thread(target=load, args=(proxy_url, stop, sent, i),
                                        daemon=True) for i in range(args.workers)]
            for w in workers:
                w.start()
            t0 = time.monotonic()
            try:
                while True:
                    at = time.monotonic() - t0
                    rows = smi.read()
                    energy = nvml.energy_j()
                    samples = scrape(metrics_url)
                    report.moments.append(Moment(at, rows, energy, proxy_gpus(samples),
                                                 ledger_totals(samples)))
                    if at >= args.seconds or time.monotonic() - began > DEADLINE_S - 20:
                        break
                    time.sleep(max(0.0, args.every - (time.monotonic() - t0 - at)))
            finally:
                stop.set()
                for w in workers:
                    w.join(35)
            report.notes.append(f"{sum(sent)} streamed chats through the proxy")
            per_token = joules_per_token(scrape(metrics_url))
    moments = report.moments
    report.problems += compare_readings(moments)
    problems, notes, energy_rows = compare_energy(moments, args.poll, smi.has_energy)
    report.problems += problems + compare_ledger(moments[-1])
    report.notes += notes
    print(readings_table(moments))
    print(f"  * nvidia-smi's {ENERGY_FIELD} since the first moment, in joules")
    print()
    print(table(["gpu", "span", "J reference", "J power×time", "J proxy", "source",
                 "reference"], energy_rows))
    gpu, idle, attributed = moments[-1].totals
    print(f"\nproxy since its start: GPU {gpu:.1f} J = idle {idle:.1f} J + attributed "
          f"{attributed:.1f} J")
    for model, jpt in per_token.items():
        print(f"{model}: {fmt(jpt, 3)} J/token (the simulator's tokens: no GPU work of theirs)")
    return report


def main(argv: Sequence[str], smi_factory: Callable[[], Smi] = Smi) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=45.0, help="seconds of load (45)")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between moments (5)")
    parser.add_argument("--poll", type=float, default=1.0,
                        help="the proxy's resources_interval_seconds (1)")
    parser.add_argument("--workers", type=int, default=4, help="concurrent chat loops (4)")
    parser.add_argument("--allow-fake-nvml", action="store_true",
                        help="accept tests/support/fake_nvml (the check's own test only)")
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 120 or not 0 < args.every <= args.seconds:
        parser.error("--seconds must be 0-120 and --every within it (three minutes in all)")
    logging.basicConfig(level=logging.WARNING, format="gpu_check: %(message)s")
    try:
        smi = smi_factory()
        nvml = Nvml(args.allow_fake_nvml)
        for row in smi.first:
            print(f"GPU {row['index']:.0f}: {row['name']}, driver {row['driver_version']}")
        report = run(args, smi, nvml)
    except CannotRun as exc:
        print(f"gpu_check: cannot run: {exc}", file=sys.stderr)
        return 2
    for note in report.notes:
        print(f"note: {note}")
    if report.problems:
        print("DISAGREE:\n  " + "\n  ".join(report.problems))
        return 1
    print(f"agree: gpu_* within {TOLERANCE_WORDS}; energy within one {args.poll:g} s poll of "
          f"the peak draw + {ENERGY_RELATIVE:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
