#!/usr/bin/env python3
"""Starts the proxy, the dashboard and the health daemon together, and stops them together.

Run through ``scripts/up``. Each part is started as its own process with the configuration
hierarchy of DESIGN.md (``--config FILE`` is passed on); the script waits until each answers
on its port, prints where it is, and on Ctrl-C (or when one part dies) stops all of them. A
part that cannot start is named with the reason (port taken, bad setting, its last lines).

``--demo`` starts the Ollama simulator as the upstream and a steady mix of traffic, so a
newcomer without Ollama sees a live dashboard.

``--proxies N`` (N > 1) uses more than one core: N proxies on the ports after the proxy's port
(metrics on the metrics port and the ones after it), Debian's nginx on the proxy's port in
front of them (``deploy/nginx/llama-metrics.conf``), and the dashboard summing all of them.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from llama_core import settings, traffic  # noqa: E402
from llama_core.security import is_loopback, load_security  # noqa: E402
from scripts import nginx_front  # noqa: E402

logger = logging.getLogger("up")
PYTHON = sys.executable
MAX_PROXIES = 64
BIN = Path(PYTHON).parent


@dataclass
class Part:
    """One process of the stack and how to tell that it is up."""

    name: str
    args: list[str]
    ready_url: str
    show: str
    env: dict[str, str] = field(default_factory=dict)
    binds: list[tuple[str, int]] = field(default_factory=list)  # (host, port) it listens on
    process: subprocess.Popen[str] | None = None
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    reader: threading.Thread | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.process = subprocess.Popen(
            self.args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=env, start_new_session=True,
        )
        self.reader = threading.Thread(target=self._pump, daemon=True)
        self.reader.start()

    def _pump(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())
            print(f"[{self.name}] {line.rstrip()}", flush=True)

    def wait_ready(self, timeout: float) -> bool:
        """Poll the part's URL until it answers (any HTTP status) or the process ends."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                # nginx's ready URL goes through a proxy: our probe is not client traffic
                ready = urllib.request.Request(self.ready_url, headers=traffic.header("scripts"))
                with urllib.request.urlopen(ready, timeout=2):
                    return True
            except urllib.error.HTTPError:
                return True  # it answered
            except OSError:
                time.sleep(delay)  # another process: there is no event to wait on
                delay = min(delay * 2, 0.5)
        return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/api/version", timeout=2):
            return True
    except OSError:
        return False


def hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def proxy_part(args: argparse.Namespace, proxy: dict, upstream: str, name: str = "proxy",
               metrics_port: int | None = None) -> Part:
    metrics = f"http://{hostport(proxy['metrics_host'], metrics_port or proxy['metrics_port'])}"
    mitm = settings.mitmdump_args({**proxy, "upstream": upstream})
    if args.config:
        mitm += ["--set", f"llama_config={args.config}"]
    if metrics_port is not None:
        mitm += ["--set", f"metrics_port={metrics_port}"]
    return Part(name, [str(BIN / "mitmdump"), *mitm, "--set", "flow_detail=0"],
                metrics + "/health",
                f"{name:<10} http://{hostport(proxy['listen_host'], proxy['listen_port'])}  -> "
                f"{upstream}   (metrics {metrics}/metrics)",
                env={"OLLAMA_HOST": upstream},
                binds=[(proxy["listen_host"], proxy["listen_port"]),
                       (proxy["metrics_host"], metrics_port or proxy["metrics_port"])])


def scale_out(args: argparse.Namespace, proxy: dict, upstream: str,
              workdir: Path) -> tuple[list[Part], list[str]]:
    """N proxies on the ports after the configured ones and nginx on the configured port:
    their parts (nginx last) and the metrics addresses for the dashboard."""
    nginx = nginx_front.binary()
    if nginx is None:
        raise RuntimeError(f"--proxies needs nginx: apt-get install {nginx_front.PACKAGE}")
    host, listen, first_metrics = (proxy["listen_host"], proxy["listen_port"],
                                   proxy["metrics_port"])
    # Port 0 means any free port, as for one proxy.
    ports = [listen + i if listen else free_port() for i in range(1, args.proxies + 1)]
    metrics = [first_metrics + i if first_metrics else free_port()
               for i in range(args.proxies)]
    listen = listen or free_port()
    # nginx is the public face: the proxies behind it listen where only nginx reaches them
    # (on the configured address when it is a local one), so that nothing bypasses it.
    near = host if is_loopback(host) else "127.0.0.1"
    parts = [proxy_part(args, {**proxy, "listen_host": near, "listen_port": port}, upstream,
                        f"proxy-{i + 1}", m)
             for i, (port, m) in enumerate(zip(ports, metrics, strict=True))]
    public = hostport(host, listen)
    command = nginx_front.prepare(workdir, public, [hostport(near, p) for p in ports],
                                  workers="auto", nginx=nginx)
    parts.append(Part("nginx", command, f"http://{public}/",
                      f"nginx      http://{public}  -> proxy-1..{args.proxies}",
                      binds=[(host, listen)]))
    urls = [f"http://{hostport(proxy['metrics_host'], m)}" for m in metrics]
    return parts, urls


def plan(
    args: argparse.Namespace, proxy: dict, upstream: str, urls: dict[str, str],
    workdir: Path | None = None,
) -> list[Part]:
    config = ["--config", args.config] if args.config else []
    dashboard = list(config)
    if args.proxies > 1 and workdir is not None:
        parts, metrics = scale_out(args, proxy, upstream, workdir)
        dashboard += [arg for url in metrics for arg in ("--proxy-metrics", url)]
    else:
        parts = [proxy_part(args, proxy, upstream)]
    parts += [
        Part("dashboard", [PYTHON, "-m", "dashboard", *dashboard], urls["dashboard"] + "/",
             "dashboard  " + urls["dashboard"], env={"OLLAMA_HOST": upstream},
             binds=[split_host_port(urls["dashboard"])]),
        Part("healthd", [PYTHON, "-m", "healthd", *config], urls["healthd"] + "/health/live",
             "healthd    " + urls["healthd"] + "/health", env={"OLLAMA_HOST": upstream},
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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/up", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML configuration file")
    parser.add_argument("--demo", action="store_true",
                        help="use the Ollama simulator as the upstream and send traffic")
    parser.add_argument("--proxies", type=int, default=1, metavar="N",
                        help="run N proxies behind nginx on the proxy's port (default 1: no "
                             "nginx); they take the next N ports and metrics ports")
    args = parser.parse_args(argv)
    if not 1 <= args.proxies <= MAX_PROXIES:
        parser.error(f"--proxies must be 1-{MAX_PROXIES}, not {args.proxies}")
    logging.basicConfig(level=logging.INFO, format="up: %(message)s")

    try:
        proxy = settings.load("proxy", config=args.config)
        urls = {name: service_url(name, args.config) for name in ("dashboard", "healthd")}
        if args.proxies > 1:  # nginx takes the proxy's address: the same rule as the proxy
            load_security(config=args.config).check_listen("proxy.listen_host",
                                                           proxy["listen_host"])
    except settings.ConfigError as e:
        logger.error("%s", e)
        return 2

    demo: list[Part] = []
    upstream = proxy["upstream"]
    if args.demo:
        sim_port = free_port()
        upstream = f"http://127.0.0.1:{sim_port}"
        sim = [PYTHON, "scripts/ollama_sim.py", "--port", str(sim_port), "--token-rate", "40",
               "--ttft", "0.15", "--load-delay", "1.5", "--tokens", "60"]
        demo.append(Part("simulator", sim, upstream + "/", "simulator  " + upstream))

    if args.proxies == 1:
        return run(args, proxy, upstream, urls, demo)
    with tempfile.TemporaryDirectory(prefix="llama-metrics-nginx-") as workdir:
        return run(args, proxy, upstream, urls, demo, Path(workdir))


def run(args: argparse.Namespace, proxy: dict, upstream: str, urls: dict[str, str],
        demo: list[Part], workdir: Path | None = None) -> int:
    """Start every part, wait until Ctrl-C or until one stops, stop them all."""
    try:
        parts = plan(args, proxy, upstream, urls, workdir)
    except (RuntimeError, ValueError) as e:  # no nginx; ports past 65535
        logger.error("%s", e)
        return 1

    taken = [(part, host, port) for part in parts for host, port in part.binds
             if port and not port_free(host, port)]
    if taken:
        for part, host, port in taken:
            logger.error("cannot start the %s: %s:%d is already in use (another llama-metrics, "
                         "or change its port in the configuration)", part.name, host, port)
        return 1

    running: list[Part] = []
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        for part in [*demo, *parts]:
            part.start()
            running.append(part)
            if not part.wait_ready(60):
                logger.error("the %s did not start; its last lines:\n  %s", part.name,
                             "\n  ".join(part.lines) or "(nothing)")
                return 1
        if not args.demo and not reachable(upstream):
            logger.warning("Ollama at %s does not answer: the proxy answers 502 until it does "
                           "(set OLLAMA_HOST, or try scripts/up --demo)", upstream)
        if args.demo:
            traffic = Part("traffic", [
                PYTHON, "scripts/demo_traffic.py", "--url",
                f"http://{proxy['listen_host']}:{proxy['listen_port']}",
                *(["--config", args.config] if args.config else [])], "", "")
            traffic.start()
            running.append(traffic)
        print("\nllama-metrics is up (Ctrl-C stops everything):", flush=True)
        for part in [*demo, *parts]:
            print("  " + part.show, flush=True)
        while not stop.wait(0.5):
            for part in running:
                if part.process is not None and part.process.poll() is not None:
                    logger.error("the %s stopped (exit %s); stopping the rest. Its last "
                                 "lines:\n  %s", part.name, part.process.returncode,
                                 "\n  ".join(part.lines))
                    return 1
        return 0
    finally:
        for part in reversed(running):
            part.stop()


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
