#!/usr/bin/env python3
"""Where the addon's time per request goes: microseconds per request by stage, per workload.

Starts the simulator, plain mitmdump (streaming on, no addon) and our proxy with every stage
timed (``scripts/profiled_addon.py``: the default configuration, history on, into a temporary
file), then runs each workload of ``scripts/bench_wrk.py`` against both, interleaved, and prints
per workload: the CPU time per request of each process, their difference (what the addon
costs), and that difference taken apart: the hooks on the event loop, the threads (history
writer, pollers, metrics server), and the rest of the event loop's extra work (mitmproxy calling
the hooks, streaming through a callable, and what the timers themselves miss).

    .venv/bin/python scripts/profile_addon.py               # about 2 minutes
    .venv/bin/python scripts/profile_addon.py --queue       # with max_concurrency set
    .venv/bin/python scripts/profile_addon.py --only embed --seconds 20
    .venv/bin/python scripts/profile_addon.py --before /tmp/before   # and another checkout

With ``--before DIR`` the same profiled addon runs a second time with the addons of another
checkout (``git worktree add /tmp/before <commit>``), interleaved with the other two, and each
stage is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import LISTENING, Target, mitmdump, service, simulator
from bench_wrk import WORKLOADS, Workload, have_wrk, load

HOOK_STAGES = ("request", "responseheaders", "chunk", "finish", "account", "observe", "record")
LABELS = {
    "request": "request hooks (tap, access, budgets, guard...)",
    "responseheaders": "response headers (parser, stream tap)",
    "chunk": "stream tap, all chunks",
    "finish": "finish hooks, less the next three",
    "account": "account (parser end, RequestRecord)",
    "observe": "metrics (ProxyMetrics.observe)",
    "record": "publish (/requests ring, history queue, budgets)",
}


def snapshot(target: Target, out: Path) -> dict[str, Any]:
    """The profiled proxy's running totals (it writes them on SIGUSR2)."""
    before = out.stat().st_mtime_ns if out.exists() else 0
    target.process.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if out.exists() and out.stat().st_mtime_ns != before:
            return dict(json.loads(out.read_text()))
        time.sleep(0.02)
    raise RuntimeError("the profiled proxy wrote no snapshot")


def diff(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    threads = {name: after["threads"][name] - before["threads"].get(name, 0.0)
               for name in after["threads"]}
    return {
        "ns": {k: after["ns"][k] - before["ns"][k] for k in HOOK_STAGES},
        "calls": {k: after["calls"][k] - before["calls"][k] for k in HOOK_STAGES},
        "threads": threads, "timer_ns": after["timer_ns"],
        "process": after["process"] - before["process"],
    }


def add(total: dict[str, Any] | None, part: dict[str, Any]) -> dict[str, Any]:
    if total is None:
        return part
    for key in ("ns", "calls", "threads"):
        for name, value in part[key].items():
            total[key][name] = total[key].get(name, 0) + value
    total["process"] += part["process"]
    return total


def breakdown(profile: dict[str, Any], requests: int, plain_us: float) -> list[tuple[str, float]]:
    """(stage, microseconds per request) rows; each hook stage less the timer's own cost."""
    timer = profile["timer_ns"]
    own = {k: profile["ns"][k] - profile["calls"][k] * timer for k in HOOK_STAGES}
    # finish contains account, observe and record (and their timers): its own share is the rest.
    own["finish"] -= sum(profile["ns"][k] for k in ("account", "observe", "record"))
    rows = [(LABELS[k], own[k] / 1000 / requests) for k in HOOK_STAGES]
    hooks = sum(us for _, us in rows)
    threads = profile["threads"]
    main = threads.get("MainThread", 0.0) * 1e6 / requests
    timers = sum(profile["calls"].values()) * timer / 1000 / requests
    rows.append(("= hooks on the event loop", hooks))
    rows.append(("event loop, rest over plain mitmdump", main - timers - hooks - plain_us))
    for name in sorted(threads):
        if name != "MainThread":
            rows.append((f"thread {name}", threads[name] * 1e6 / requests))
    rows.append(("(timers, subtracted above)", timers))
    return rows


@dataclass
class Totals:
    """One profiled proxy's sums over the rounds of a workload."""

    cpu: float = 0.0
    requests: int = 0
    profile: dict[str, Any] | None = None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per run (10)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--queue", action="store_true", help="set max_concurrency")
    parser.add_argument("--only", choices=sorted(WORKLOADS), action="append")
    parser.add_argument("--before", type=Path, metavar="DIR",
                        help="also profile the addons of another checkout")
    parser.add_argument("--json", help="write the numbers to this file too")
    args = parser.parse_args(argv)
    if args.before is not None and not (args.before / "addons/llama_metrics.py").is_file():
        parser.error(f"--before {args.before}: no addons/llama_metrics.py there")
    workloads: list[Workload] = [WORKLOADS[n] for n in (args.only or WORKLOADS)]
    trees = {"after": None} if args.before is None else {"before": args.before.resolve(),
                                                        "after": None}

    report: dict[str, dict[str, Any]] = {tree: {} for tree in trees}
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        sim = stack.enter_context(service(simulator(100), r"http://127\.0\.0\.1:(\d+)", "sim"))
        plain = stack.enter_context(service(
            mitmdump(sim.url, "--set", "stream_large_bodies=1"), LISTENING, "mitmdump"))
        extra = ["--set", f"max_concurrency={args.concurrency}"] if args.queue else []
        profiled: dict[str, tuple[Target, Path]] = {}
        for tree, root in trees.items():
            out = Path(tmp) / f"profile-{tree}.json"
            env = {"PROFILE_ADDON_OUT": str(out)}
            if root is not None:
                env["PYTHONPATH"] = str(root)
            ours = stack.enter_context(service(
                mitmdump(sim.url, "-s", "scripts/profiled_addon.py", "--set", "metrics_port=0",
                         "--set", f"history_path={tmp}/history-{tree}.db", *extra),
                LISTENING, tree, env=env))
            ours.metrics_url()  # running: the timers are calibrated and the signal handler is set
            profiled[tree] = (ours, out)
        for target in (plain, *(t for t, _ in profiled.values())):  # warm: imports, connections
            load(target.url, workloads[0], seconds=1, concurrency=args.concurrency)
        for workload in workloads:
            plain_cpu = plain_requests = 0.0
            totals = {tree: Totals() for tree in trees}
            for _ in range(args.rounds):
                cpu = plain.cpu_seconds()
                run = load(plain.url, workload, seconds=args.seconds,
                           concurrency=args.concurrency)
                plain_cpu += plain.cpu_seconds() - cpu
                plain_requests += run.requests
                for tree, (ours, out) in profiled.items():
                    before, cpu = snapshot(ours, out), ours.cpu_seconds()
                    run = load(ours.url, workload, seconds=args.seconds,
                               concurrency=args.concurrency)
                    time.sleep(1.5)  # the history writer's batch (flush_interval 1 s) is written
                    total = totals[tree]
                    total.cpu += ours.cpu_seconds() - cpu
                    total.requests += run.requests
                    total.profile = add(total.profile, diff(snapshot(ours, out), before))
            plain_us = plain_cpu * 1e6 / plain_requests
            for tree, total in totals.items():
                profile, requests = total.profile, total.requests
                assert profile is not None
                report[tree][workload.name] = {
                    "plain_cpu_us": plain_us, "ours_cpu_us": total.cpu * 1e6 / requests,
                    "requests": requests, "finished": profile["calls"]["finish"],
                    "chunks_per_request": profile["calls"]["chunk"] / requests,
                    "stages_us": dict(breakdown(profile, requests, plain_us)),
                }
            print(f"{workload.name} done", file=sys.stderr)

    print(f"\nload: {'wrk' if have_wrk() else 'aiohttp'}, {args.rounds} rounds x "
          f"{args.seconds:g} s per workload and target at concurrency {args.concurrency}; "
          f"ours: default configuration, history on{', max_concurrency set' if args.queue else ''}"
          + (f"; before: the addons of {args.before}" if args.before else "")
          + "; CPU microseconds per request")
    names = [w.name for w in workloads]
    columns = [(tree, n) for n in names for tree in trees]
    print(f"{'':<50}" + "".join(f"{n + (' ' + t if len(trees) > 1 else ''):>17}"
                                for t, n in columns))

    def row(label: str, values: list[float]) -> None:
        print(f"{label:<50}" + "".join(f"{v:>17.1f}" for v in values))

    first = report["after"][names[0]]
    row("plain mitmdump, process", [report[t][n]["plain_cpu_us"] for t, n in columns])
    row("ours, process", [report[t][n]["ours_cpu_us"] for t, n in columns])
    row("= the addon's cost", [report[t][n]["ours_cpu_us"] - report[t][n]["plain_cpu_us"]
                               for t, n in columns])
    labels = list(first["stages_us"])
    for tree in trees:  # a thread only one tree has still gets its row
        for n in names:
            labels += [k for k in report[tree][n]["stages_us"] if k not in labels]
    for label in labels:
        row("  " + label, [report[t][n]["stages_us"].get(label, 0.0) for t, n in columns])
    row("chunks per request", [report[t][n]["chunks_per_request"] for t, n in columns])
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
