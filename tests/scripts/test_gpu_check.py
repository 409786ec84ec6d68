"""scripts/gpu_check.py: it refuses cleanly without a GPU, agrees on a consistent fake, and
names what disagrees on an inconsistent one.

A real GPU is not here: the whole run is driven by the test suite's fake pynvml (one GPU at
200 W whose counter counts exactly that, from the monotonic clock) and a fake ``nvidia-smi``
on ``PATH`` that reads the same clock, so both sides see the same GPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import gpu_check
from scripts.gpu_check import FIELDS, TOLERANCES, Moment, compare_ledger, compare_readings

ROOT = Path(__file__).resolve().parents[2]
FAKE_NVML = ROOT / "tests" / "support" / "fake_nvml"

FAKE_SMI = '''#!{python}
import sys, time
fields = sys.argv[1].split("=", 1)[1].split(",")
{refuse}
watts = {watts}
row = {{"index": "0", "name": "Fake NVIDIA GPU", "driver_version": "0.0-fake",
       "power.draw": f"{{watts:.2f}}", "memory.used": "1024", "utilization.gpu": "50",
       "temperature.gpu": "50",
       "total_energy_consumption": str(int(time.monotonic() * {counter_watts} * 1000))}}
print(", ".join(row[f] for f in fields))
'''


def fake_smi(folder: Path, watts: float = 200.0, counter_watts: float = 200.0,
             refuse: str = "") -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "nvidia-smi"
    path.write_text(FAKE_SMI.format(python=sys.executable, watts=watts,
                                    counter_watts=counter_watts, refuse=refuse))
    path.chmod(0o755)
    return folder


def check(*args: str, path: Path | None = None, fake_nvml: bool = True,
          timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["PATH"] = (f"{path}:" if path else "") + "/usr/bin:/bin"
    if fake_nvml:
        env["PYTHONPATH"] = str(FAKE_NVML)
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


QUICK = ("--seconds", "4", "--every", "2", "--poll", "0.5", "--workers", "2")


@pytest.mark.e2e
def test_without_nvidia_smi_it_says_so_and_exits_2() -> None:
    done = check(fake_nvml=False)
    assert done.returncode == 2
    assert done.stderr.startswith("gpu_check: cannot run: no NVIDIA GPU to check:")
    assert "nvidia-smi is not on PATH" in done.stderr and done.stdout == ""


@pytest.mark.e2e
def test_a_failing_driver_exits_2_with_its_words(tmp_path: Path) -> None:
    refuse = ('print("NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA '
              'driver."); sys.exit(9)')
    done = check(path=fake_smi(tmp_path / "bin", refuse=refuse), fake_nvml=False)
    assert done.returncode == 2
    assert "exited 9: NVIDIA-SMI has failed because it couldn't communicate" in done.stderr


@pytest.mark.e2e
def test_the_fake_nvml_is_refused_unless_asked_for(tmp_path: Path) -> None:
    done = check(path=fake_smi(tmp_path / "bin"))
    assert done.returncode == 2
    assert "the test suite's fake pynvml" in done.stderr


@pytest.mark.e2e
def test_real_nvml_without_a_driver_exits_2(tmp_path: Path) -> None:
    """This machine's nvidia-ml-py with no driver behind it, past a working nvidia-smi."""
    done = check(path=fake_smi(tmp_path / "bin"), fake_nvml=False)
    assert done.returncode == 2
    assert "no NVIDIA GPU to check: NVML:" in done.stderr


@pytest.mark.e2e
def test_a_consistent_gpu_agrees(tmp_path: Path) -> None:
    done = check(*QUICK, "--allow-fake-nvml", path=fake_smi(tmp_path / "bin"))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert out.startswith("GPU 0: Fake NVIDIA GPU, driver 0.0-fake\n")
    assert "W smi" in out and "J proxy" in out  # the side-by-side table
    assert "nvidia-smi total_energy_consumption (read as mJ)" in out
    assert "= idle" in out and out.rstrip().splitlines()[-1].startswith("agree:")


@pytest.mark.e2e
def test_a_disagreeing_gpu_is_named(tmp_path: Path) -> None:
    # nvidia-smi says 300 W and counts 400 W: the proxy's 200 W GPU disagrees with both.
    done = check(*QUICK, "--allow-fake-nvml",
                 path=fake_smi(tmp_path / "bin", watts=300.0, counter_watts=400.0))
    assert done.returncode == 1, done.stdout + done.stderr
    problems = done.stdout.split("DISAGREE:", 1)[1]
    assert "GPU 0 power_w: nvidia-smi 300, proxy 200" in problems
    assert "nvidia-smi total_energy_consumption" in problems
    assert "power draw integrated" in problems


def test_parse_smi_reads_numbers_and_not_available() -> None:
    line = "0, NVIDIA H200, 570.86.15, [N/A], 1024, 3, 31, 123456789\n"
    [row] = gpu_check.parse_smi(line, FIELDS)
    assert row["name"] == "NVIDIA H200" and row["driver_version"] == "570.86.15"
    assert row["power.draw"] is None and row["memory.used"] == 1024.0
    assert row["total_energy_consumption"] == 123456789.0
    with pytest.raises(gpu_check.CannotRun, match="expected 8 fields"):
        gpu_check.parse_smi("0, NVIDIA H200\n", FIELDS)


def moment(smi_watts: float | None, proxy_watts: float | None, *, name: str = "G") -> Moment:
    smi = {"index": 0.0, "name": "G", "power.draw": smi_watts, "memory.used": 100.0,
           "utilization.gpu": 0.0, "temperature.gpu": 40.0}
    proxy = {0: {"name": name, "power_w": proxy_watts, "memory_mib": 100.0,
                 "utilization_pct": 0.0, "temperature_c": 41.0}}
    return Moment(0.0, [smi], {0: None}, proxy, (0.0, 0.0, 0.0))


@pytest.mark.parametrize(("smi", "proxy", "agree"), [
    (100.0, 100.0, True), (100.0, 124.0, True), (100.0, 126.0, False),
    (400.0, 460.0, True), (400.0, 480.0, False),  # 15 % of the larger
    (None, 100.0, True),  # nvidia-smi has no reading here: nothing to compare
    (100.0, None, False),  # the proxy lacks one nvidia-smi has
])
def test_power_tolerance(smi: float | None, proxy: float | None, agree: bool) -> None:
    assert TOLERANCES["power_w"] == (25.0, 0.15)
    assert (compare_readings([moment(smi, proxy)]) == []) is agree


def test_a_different_name_and_a_missing_gpu_are_named() -> None:
    assert compare_readings([moment(1.0, 1.0, name="other")]) == [
        "GPU 0: proxy names it 'other', nvidia-smi 'G'"]
    lost = moment(1.0, 1.0)
    lost.proxy.clear()
    assert "is not in the proxy's gpu_* series" in compare_readings([lost])[0]


def test_the_ledger_must_add_up() -> None:
    def at(totals: tuple[float, float, float]) -> Moment:
        return Moment(0.0, [], {}, {}, totals)

    assert compare_ledger(at((100.0, 40.0, 60.0))) == []
    assert "is not idle" in compare_ledger(at((100.0, 40.0, 50.0)))[0]
    assert compare_ledger(at((100.0, 100.0, 0.0))) == [
        "no energy was attributed to the requests sent"]
    assert compare_ledger(at((0.0, 0.0, 0.0))) == ["the proxy counted no GPU energy"]
