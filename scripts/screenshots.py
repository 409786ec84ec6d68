#!/usr/bin/env python3
"""Takes the README's dashboard screenshots (desktop and phone) from ``scripts/up --demo``.

Starts the demo on free ports with its data in a temporary directory (the real history is
not touched), lets the simulated traffic run for ``--warmup`` seconds, then shows the page in
headless Chromium at 1440x900 and 390x844 and writes ``docs/screenshot-desktop.png`` (the
whole page) and ``docs/screenshot-phone.png`` (its first 1,700 px). It fails, writing
nothing, when the page has console errors, scrolls sideways on the phone, or the proxy,
Ollama, history or live status is not ok: a screenshot shows what a user sees, not a test.
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
import time
import urllib.request
from pathlib import Path

logger = logging.getLogger("screenshots")

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
VIEWPORTS = {"desktop": (1440, 900), "phone": (390, 844)}
PHONE_HEIGHT = 1700


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_config(data: Path) -> Path:
    proxy, metrics, dashboard, healthd = (free_port() for _ in range(4))
    history = data / "history.db"
    config = data / "demo.yml"
    config.write_text(f"""\
proxy: {{listen_port: {proxy}, metrics_port: {metrics}, history_path: {history}}}
dashboard:
  port: {dashboard}
  proxy_metrics_url: http://127.0.0.1:{metrics}
  history_path: {history}
  healthd_url: http://127.0.0.1:{healthd}
healthd:
  port: {healthd}
  proxy_metrics_url: http://127.0.0.1:{metrics}
  proxy_url: http://127.0.0.1:{proxy}
  dashboard_url: http://127.0.0.1:{dashboard}
  history_path: {history}
""")
    return config


def wait_for(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer in {timeout:.0f} s") from None
            time.sleep(0.5)


def shoot(url: str, out: Path) -> list[str]:
    from playwright.sync_api import sync_playwright

    problems: list[str] = []

    def console(message: object) -> None:
        if getattr(message, "type", "") == "error":
            problems.append(str(getattr(message, "text", message)))

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox",
                                                                     "--disable-gpu"])
        try:
            for name, (width, height) in VIEWPORTS.items():
                page = browser.new_page(viewport={"width": width, "height": height})
                page.on("console", console)
                page.goto(url)
                # The demo is minutes old: its last 15 min is what the history has.
                page.click("button[data-window='15m']")
                page.wait_for_function(
                    "() => window.llamaDashboard.points.length >= 5"
                    " && !document.querySelector('#status-history.unknown')", timeout=20_000)
                page.wait_for_timeout(1500)  # the history charts' first answer
                scroll = page.evaluate("document.documentElement.scrollWidth")
                if scroll > width:
                    problems.append(f"{name}: the page is {scroll} px wide")
                states = page.eval_on_selector_all(
                    "#status li", "items => items.map(i => i.id + ' ' + i.className)")
                for state in states:
                    # The health daemon judges this machine (a busy CPU is critical): shown
                    # as it is. The rest must be up, or the picture shows a broken demo.
                    if not state.endswith(" ok") and not state.startswith("status-healthd"):
                        problems.append(f"{name}: {state} is not ok")
                target = out / f"screenshot-{name}.png"
                if name == "phone":
                    page.screenshot(path=str(target), full_page=True, clip={
                        "x": 0, "y": 0, "width": width, "height": PHONE_HEIGHT})
                else:
                    page.screenshot(path=str(target), full_page=True)
                print(f"screenshots: wrote {target}", flush=True)
        finally:
            browser.close()
    return problems


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=float, default=90.0,
                        help="seconds of demo traffic before the screenshots")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="llama-metrics-shots-") as tmp:
        config = demo_config(Path(tmp))
        dashboard_port = next(line.split(":")[1].strip() for line in
                              config.read_text().splitlines() if line.startswith("  port:"))
        url = f"http://127.0.0.1:{dashboard_port}/"
        log = open(Path(tmp) / "up.log", "w")  # noqa: SIM115  (closed below)
        # The demo's own data directory (history, logs) is in the temporary one too: in
        # data/demo the history of earlier runs would show in the pictures.
        up = subprocess.Popen([str(ROOT / "scripts" / "up"), "--demo", "--config", str(config),
                               "--data-dir", str(Path(tmp) / "demo")],
                              cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True, env={**os.environ})
        try:
            wait_for(url, 60)
            print(f"screenshots: demo on {url}; {args.warmup:.0f} s of traffic first",
                  flush=True)
            time.sleep(args.warmup)  # the traffic itself is what is waited for
            with tempfile.TemporaryDirectory(dir=tmp) as staging:
                problems = shoot(url, Path(staging))
                if problems:
                    print("screenshots: not written:\n  " + "\n  ".join(problems),
                          file=sys.stderr)
                    return 1
                args.out.mkdir(parents=True, exist_ok=True)
                for shot in Path(staging).iterdir():
                    shot.replace(args.out / shot.name)
        finally:
            os.killpg(up.pid, signal.SIGINT)
            try:
                up.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
                up.wait()
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
