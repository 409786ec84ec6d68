#!/usr/bin/env python3
"""Starts the proxy, the dashboard and the health daemon together, and stops them together.

Run through ``scripts/up``. Each part is started as its own process with the configuration
hierarchy of docs/architecture.md (``--config FILE`` is passed on); the script waits until
each answers on its port, prints where it is, and on Ctrl-C (or when one part dies) stops all
of them. A part that cannot start is named with the reason (port taken and by whom, bad
setting, its last lines). The terminal gets the summary, warnings and errors, and a line when
Ollama goes down or comes back; each part's whole output is in its log file (``--verbose``
prints it all).

``--demo`` starts the Ollama simulator as the upstream and a steady mix of traffic, so a
newcomer without Ollama sees a live dashboard. It keeps its history, health state and logs in
a directory of its own (``data/demo``), never the real ones. When the simulator stops (``kill``
its pid, or ``kill -USR1`` this script's), the stack stays up and shows the outage; it is
started again after ``--sim-restart`` seconds, or at the next SIGUSR1.

``--proxies N`` (N > 1) uses more than one core: N proxies on the ports after the proxy's port
(metrics on the metrics port and the ones after it), Debian's nginx on the proxy's port in
front of them (``deploy/nginx/llama-metrics.conf``), and the dashboard summing all of them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from llama_core import settings  # noqa: E402
from llama_core.security import is_loopback, load_security  # noqa: E402
from scripts import demo_dir, nginx_front  # noqa: E402
from scripts.port_check import bind_problem  # noqa: E402
from scripts.stack_part import Part  # noqa: E402

logger = logging.getLogger("up")
PYTHON = sys.executable
MAX_PROXIES = 64
BIN = Path(PYTHON).parent


def upstream_up(health_url: str, headers: dict[str, str] | None = None) -> bool | None:
    """Whether the proxy last reached Ollama, from its /health; None when it cannot say."""
    try:
        request = urllib.request.Request(health_url, headers=headers or {})
        with urllib.request.urlopen(request, timeout=2) as response:
            value = json.load(response).get("upstream_up")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, bool) else None


def watch_upstream(health_url: str, upstream: str, stop: threading.Event,
                   demo: bool, headers: dict[str, str] | None = None) -> None:
    """One line each time Ollama goes down or comes back, as the proxy sees it (``headers``:
    the access token, when the parts have one)."""
    state: bool | None = None
    while not stop.wait(1.0):
        up = upstream_up(health_url, headers)
        if up is None or up == state:
            continue
        if up and state is not None:
            logger.info("Ollama at %s is back", upstream)
        elif not up and state is None and not demo:
            logger.warning("Ollama at %s does not answer: the proxy answers 502 until it does "
                           "(set OLLAMA_HOST, or try scripts/up --demo)", upstream)
        elif not up:
            logger.warning("Ollama at %s is down: clients get 502 until it is back", upstream)
        state = up


def hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class Launch:
    """What every part is started with."""

    config: str | None  # the file the parts read (the demo's own copy with --demo)
    env: dict[str, str]  # variables for every part
    logs: Path  # one log file per part in here
    verbose: bool

    def part(self, name: str, args: list[str], ready_url: str, show: str,
             binds: list[tuple[str, int]] | None = None) -> Part:
        return Part(name, args, ready_url, show, cwd=ROOT, env=dict(self.env),
                    binds=binds or [], log_path=self.logs / f"{name}.log",
                    verbose=self.verbose)

    @property
    def config_args(self) -> list[str]:
        return ["--config", self.config] if self.config else []


def proxy_part(launch: Launch, proxy: dict, upstream: str, name: str = "proxy",
               metrics_port: int | None = None) -> Part:
    metrics = f"http://{hostport(proxy['metrics_host'], metrics_port or proxy['metrics_port'])}"
    # log_levels first: the proxy's script logs while it loads, and every line needs its level
    mitm = ["-s", str(ROOT / "addons" / "log_levels.py"),
            *settings.mitmdump_args({**proxy, "upstream": upstream})]
    if launch.config:
        mitm += ["--set", f"llama_config={launch.config}"]
    if metrics_port is not None:
        mitm += ["--set", f"metrics_port={metrics_port}"]
    return launch.part(
        name, [str(BIN / "mitmdump"), *mitm, "--set", "flow_detail=0"], metrics + "/health",
        f"{name:<10} http://{hostport(proxy['listen_host'], proxy['listen_port'])}  -> "
        f"{upstream}   (metrics {metrics}/metrics)",
        binds=[(proxy["listen_host"], proxy["listen_port"]),
               (proxy["metrics_host"], metrics_port or proxy["metrics_port"])])


def scale_out(launch: Launch, count: int, proxy: dict, upstream: str,
              workdir: Path) -> tuple[list[Part], list[str]]:
    """N proxies on the ports after the configured ones and nginx on the configured port:
    their parts (nginx last) and the metrics addresses for the dashboard."""
    nginx = nginx_front.binary()
    if nginx is None:
        raise RuntimeError(f"--proxies needs nginx: apt-get install {nginx_front.PACKAGE}")
    host, listen, first_metrics = (proxy["listen_host"], proxy["listen_port"],
                                   proxy["metrics_port"])
    # Port 0 means any free port, as for one proxy.
    ports = [listen + i if listen else free_port() for i in range(1, count + 1)]
    metrics = [first_metrics + i if first_metrics else free_port() for i in range(count)]
    listen = listen or free_port()
    # nginx is the public face: the proxies behind it listen where only nginx reaches them
    # (on the configured address when it is a local one), so that nothing bypasses it.
    near = host if is_loopback(host) else "127.0.0.1"
    parts = [proxy_part(launch, {**proxy, "listen_host": near, "listen_port": port}, upstream,
                        f"proxy-{i + 1}", m)
             for i, (port, m) in enumerate(zip(ports, metrics, strict=True))]
    public = hostport(host, listen)
    command = nginx_front.prepare(workdir, public, [hostport(near, p) for p in ports],
                                  workers="auto", nginx=nginx)
    parts.append(launch.part("nginx", command, f"http://{public}/",
                             f"nginx      http://{public}  -> proxy-1..{count}",
                             binds=[(host, listen)]))
    urls = [f"http://{hostport(proxy['metrics_host'], m)}" for m in metrics]
    return parts, urls


def plan(launch: Launch, proxies: int, proxy: dict, upstream: str, urls: dict[str, str],
         workdir: Path | None = None) -> list[Part]:
    dashboard = launch.config_args
    if proxies > 1 and workdir is not None:
        parts, metrics = scale_out(launch, proxies, proxy, upstream, workdir)
        dashboard = dashboard + [arg for url in metrics for arg in ("--proxy-metrics", url)]
    else:
        parts = [proxy_part(launch, proxy, upstream)]
    parts += [
        launch.part("dashboard", [PYTHON, "-m", "dashboard", *dashboard],
                    urls["dashboard"] + "/", "dashboard  " + urls["dashboard"],
                    binds=[split_host_port(urls["dashboard"])]),
        launch.part("healthd", [PYTHON, "-m", "healthd", *launch.config_args],
                    urls["healthd"] + "/health/live", "healthd    " + urls["healthd"] + "/health",
                    binds=[split_host_port(urls["healthd"])]),
    ]
    return parts


def service_url(section: str, config: str | None) -> str:
    """Where the dashboard or health daemon will listen, read from their own settings."""
    from dashboard.settings import DASHBOARD_KEYS
    from healthd.config import HEALTHD_KEYS

    keys = {"dashboard": DASHBOARD_KEYS, "healthd": HEALTHD_KEYS}[section]
    values = settings.load(section, keys=keys, config=config)
    host = values["host"]
    return f"http://{'[' + host + ']' if ':' in host else host}:{values['port']}"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/up", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML configuration file")
    parser.add_argument("--demo", action="store_true",
                        help="use the Ollama simulator as the upstream and send traffic; its "
                             "data stays in the demo directory (data/demo)")
    parser.add_argument("--proxies", type=int, default=1, metavar="N",
                        help="run N proxies behind nginx on the proxy's port (default 1: no "
                             "nginx); they take the next N ports and metrics ports")
    parser.add_argument("--data-dir", type=Path, metavar="DIR",
                        help="where the logs go (DIR/logs; default data, or data/demo with "
                             "--demo, which also keeps its history and health state there); "
                             "relative to the checkout")
    parser.add_argument("--verbose", action="store_true",
                        help="print every line of every part, not only warnings and errors")
    parser.add_argument("--sim-restart", type=float, default=120, metavar="SECONDS",
                        help="with --demo: start a stopped simulator again after this long "
                             "(default 120; 0: only on SIGUSR1)")
    args = parser.parse_args(argv)
    if not 1 <= args.proxies <= MAX_PROXIES:
        parser.error(f"--proxies must be 1-{MAX_PROXIES}, not {args.proxies}")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="up: %(message)s")
    try:
        proxy = settings.load("proxy", config=args.config)
        urls = {name: service_url(name, args.config) for name in ("dashboard", "healthd")}
        if args.proxies > 1:  # nginx takes the proxy's address: the same rule as the proxy
            load_security(config=args.config).check_listen("proxy.listen_host",
                                                           proxy["listen_host"])
        data = ROOT / (args.data_dir or Path("data/demo" if args.demo else "data"))
        launch = Launch(args.config, {}, data / "logs", args.verbose)
        sim: Part | None = None
        upstream = proxy["upstream"]
        if args.demo:
            upstream = f"http://127.0.0.1:{free_port()}"
            launch.config = str(demo_dir.write_config(data, args.config, upstream))
            launch.env = demo_dir.environment(data, upstream)
            sim = launch.part("simulator", [
                PYTHON, "scripts/ollama_sim.py", "--port", upstream.rsplit(":", 1)[1],
                "--token-rate", "40", "--ttft", "0.15", "--load-delay", "1.5", "--tokens", "60",
            ], upstream + "/", "simulator  " + upstream)
        else:
            launch.env = {"OLLAMA_HOST": upstream}
    except settings.ConfigError as e:
        logger.error("%s", e)
        return 2

    if args.proxies == 1:
        return run(args, launch, proxy, upstream, urls, sim)
    with tempfile.TemporaryDirectory(prefix="llama-metrics-nginx-") as workdir:
        return run(args, launch, proxy, upstream, urls, sim, Path(workdir))


def run(args: argparse.Namespace, launch: Launch, proxy: dict, upstream: str,
        urls: dict[str, str], sim: Part | None, workdir: Path | None = None) -> int:
    """Start every part, wait until Ctrl-C or until one stops, stop them all."""
    try:
        parts = plan(launch, args.proxies, proxy, upstream, urls, workdir)
    except (RuntimeError, ValueError) as e:  # no nginx; ports past 65535
        logger.error("%s", e)
        return 1

    problems = [(part, host, port, problem) for part in parts for host, port in part.binds
                if port and (problem := bind_problem(host, port))]
    if problems:
        for part, host, port, problem in problems:
            logger.error("cannot start the %s: %s %s (another llama-metrics, or change its "
                         "port in the configuration)", part.name, hostport(host, port), problem)
        return 1

    demo = [sim] if sim is not None else []
    traffic: list[Part] = []
    if sim is not None:
        clients = Path(launch.config or "").parent / demo_dir.CLIENTS_NAME
        traffic.append(launch.part("traffic", [
            PYTHON, "scripts/demo_traffic.py", "--url",
            f"http://{hostport(proxy['listen_host'], proxy['listen_port'])}",
            *launch.config_args, "--clients", str(clients)], "", ""))
    for part in [*demo, *parts, *traffic]:
        rotate(part.log_path)

    running: list[Part] = []
    stop, toggle = threading.Event(), threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, lambda *_: toggle.set())
    try:
        for part in [*demo, *parts]:
            part.start()
            running.append(part)
            if not part.wait_ready(60):
                logger.error("the %s did not start; its last lines:\n  %s", part.name,
                             "\n  ".join(part.lines) or "(nothing)")
                return 1
        for part in traffic:
            part.start()
            running.append(part)
        token = load_security(config=launch.config, env={**os.environ, **launch.env}).headers()
        threading.Thread(target=watch_upstream, args=(parts[0].ready_url, upstream, stop,
                                                      sim is not None, token),
                         daemon=True, name="upstream watch").start()
        summary(launch, [*demo, *parts, *traffic], sim, urls, args.sim_restart)
        return supervise(running, sim, stop, toggle, args.sim_restart)
    finally:
        for part in reversed(running):
            part.stop()


def summary(launch: Launch, parts: list[Part], sim: Part | None, urls: dict[str, str],
            sim_restart: float) -> None:
    print("\nllama-metrics is up (Ctrl-C stops everything):", flush=True)
    for part in parts:
        if part.show:
            pid = f"   (pid {part.pid})" if part is sim else ""
            print(f"  {part.show}{pid}", flush=True)
    logs = ", ".join(p.log_path.name for p in parts if p.log_path is not None)
    print(f"  logs       {shown_path(launch.logs)}/  ({logs})", flush=True)
    if sim is not None and launch.config is not None:
        python = shown_path(Path(PYTHON))
        dashboard_port = split_host_port(urls["dashboard"])[1]
        for line in demo_dir.hints(Path(shown_path(Path(launch.config))),
                                   sim.ready_url.rstrip("/"), dashboard_port, python,
                                   os.getpid(), sim_restart, urls["dashboard"]):
            print(line, flush=True)
    print(flush=True)


def supervise(running: list[Part], sim: Part | None, stop: threading.Event,
              toggle: threading.Event, sim_restart: float) -> int:
    """Until Ctrl-C: a part that stops stops the stack, except the demo's simulator, whose
    stop is an Ollama outage (started again later, or at SIGUSR1); 0 on Ctrl-C, else 1."""
    sim_down_since: float | None = None
    while not stop.wait(0.5):
        start_sim = False
        if toggle.is_set():
            toggle.clear()
            if sim is not None and sim.running():
                sim.stop()  # the loop below reports it as an outage
            else:
                start_sim = sim is not None
        for part in running:
            if part.running():
                continue
            assert part.process is not None
            if part is not sim:
                logger.error("the %s stopped (exit %s); stopping the rest. Its last lines:"
                             "\n  %s", part.name, part.process.returncode,
                             "\n  ".join(part.lines))
                return 1
            if sim_down_since is None:
                sim_down_since = time.monotonic()
                again = (f"it starts again in {sim_restart:g} s, or at kill -USR1 {os.getpid()}"
                         if sim_restart > 0 else f"kill -USR1 {os.getpid()} starts it again")
                logger.warning("the simulator stopped (exit %s): Ollama is down for the demo; "
                               "%s", part.process.returncode, again)
        if sim is not None and sim_down_since is not None and (
            start_sim or 0 < sim_restart <= time.monotonic() - sim_down_since
        ):
            logger.info("starting the simulator again on %s", sim.ready_url.rstrip("/"))
            sim.start()
            sim_down_since = None
    return 0


def rotate(path: Path | None) -> None:
    """Keep the previous run's log as NAME.log.1, so a new start does not erase a crash."""
    if path is not None and path.exists():
        path.replace(path.with_name(path.name + ".1"))


def shown_path(path: Path) -> str:
    """A path as the user types it from the checkout."""
    # Not resolved: .venv/bin/python is a link to the interpreter it was made from.
    try:
        return str(Path(os.path.abspath(path)).relative_to(ROOT))
    except ValueError:
        return str(path)


def split_host_port(url: str) -> tuple[str, int]:
    hostport = url.split("://", 1)[1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
