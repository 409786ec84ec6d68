"""The layers hold: importing the dashboard or the health daemon never imports the proxy.

Every module of ``dashboard`` and ``healthd`` is imported in a fresh interpreter, which must
end with neither ``mitmproxy`` nor ``addons`` (the proxy's package) loaded; ``llama_core``,
which all three processes share, must import neither mitmproxy nor Flask.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def modules(package: str) -> list[str]:
    found = [package]
    for info in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
        found.append(info.name)
    return sorted(found)


def imported_after(names: list[str]) -> list[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def test_every_package_has_modules_to_import() -> None:
    for package in ("dashboard", "healthd", "llama_core"):
        assert len(modules(package)) > 3, package


@pytest.mark.parametrize("packages", [("dashboard", "healthd"), ("dashboard",), ("healthd",)])
def test_dashboard_and_healthd_never_import_the_proxy(packages: tuple[str, ...]) -> None:
    names = [name for package in packages for name in modules(package)]
    loaded = imported_after(names)
    assert set(names) <= set(loaded)
    assert [m for m in loaded if m.split(".")[0] in ("mitmproxy", "addons")] == []


def test_the_shared_package_imports_neither_mitmproxy_nor_flask() -> None:
    loaded = imported_after(modules("llama_core"))
    assert [m for m in loaded if m.split(".")[0] in ("mitmproxy", "addons", "flask")] == []
