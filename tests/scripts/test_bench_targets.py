"""scripts/bench.py's throughput targets: which run, and in what order each round."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(SCRIPTS))  # it imports its siblings (bench_wrk) by name
    return importlib.import_module("bench")


def test_plain_comes_first_and_each_option_adds_its_target(bench: ModuleType) -> None:
    args = argparse.Namespace(before=None, floor=False, quiet=False, no_history=False,
                              control=False)
    assert bench.throughput_targets(args) == ["mitmdump", "ours", "ours+queue"]
    args = argparse.Namespace(before=Path("/tmp/x"), floor=True, quiet=True, no_history=True,
                              control=True)
    assert bench.throughput_targets(args) == [
        "mitmdump", "plain2", "quiet", "floor", "nohist", "ours", "ours+queue", "before",
        "before+queue"]

    assert bench.compared_trees(args) == ["ours", "plain2", "quiet", "floor", "nohist", "before"]


def test_every_other_round_runs_the_targets_in_reverse(bench: ModuleType) -> None:
    targets = ["mitmdump", "quiet", "ours", "ours+queue"]
    orders = [bench.round_order(targets, n) for n in range(4)]
    assert orders[0] == orders[2] == targets
    assert orders[1] == orders[3] == ["ours+queue", "ours", "quiet", "mitmdump"]
    assert targets == ["mitmdump", "quiet", "ours", "ours+queue"]  # not reordered in place



def test_each_target_has_its_own_command_and_history_file(bench: ModuleType) -> None:
    args = argparse.Namespace(before=Path("/tmp/before"), floor=True, quiet=True,
                              no_history=True, control=True, concurrency=16)
    commands = bench.throughput_commands(args, "http://127.0.0.1:1", "/tmp/t")
    assert list(commands) == bench.throughput_targets(args)
    argv = {name: " ".join(command) for name, (command, _env) in commands.items()}
    assert "-s" not in commands["mitmdump"][0] and argv["mitmdump"] == argv["plain2"]
    assert "scripts/quiet_plain.py" in argv["quiet"]
    assert "history_path= " in argv["nohist"] + " "
    histories = [a.split("history_path=")[1].split()[0] for n, a in argv.items()
                 if n.startswith(("ours", "before"))]
    assert len(set(histories)) == len(histories) == 4  # none writes another's file
    assert "max_concurrency=16" in argv["ours+queue"] and "max_concurrency" not in argv["ours"]
    assert "/tmp/before/addons/llama_metrics.py" in argv["before+queue"]
    assert commands["before"][1] == {"PYTHONPATH": "/tmp/before"}
    assert commands["ours"][1] is None
