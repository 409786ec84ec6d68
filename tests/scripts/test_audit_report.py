"""scripts/audit_report.py: what the CI audit prints and when it fails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from scripts import audit_report

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "audit_report.py"

VULNERABLE = {
    "dependencies": [
        {"name": "flask", "version": "3.1.0", "vulns": []},
        {"name": "werkzeug", "version": "3.0.1", "vulns": [
            {"id": "GHSA-2g68-c3qc-8985", "fix_versions": ["3.0.3"], "aliases": []},
        ]},
    ],
    "fixes": [],
}
NOT_FOUND = "Dependency not found on PyPI and could not be audited"
UNREACHABLE = {
    "dependencies": [
        {"name": "flask", "skip_reason": NOT_FOUND},
        {"name": "werkzeug", "skip_reason": NOT_FOUND},
    ],
    "fixes": [],
}


def test_a_known_vulnerability_fails_and_is_named() -> None:
    lines, code = audit_report.summarise(VULNERABLE)
    assert code == 1
    assert "2 audited, 0 could not be audited, 1 with known vulnerabilities" in lines[0]
    assert "werkzeug 3.0.1: GHSA-2g68-c3qc-8985 (fixed in: 3.0.3)" in "\n".join(lines)


def test_nothing_audited_is_said_plainly_not_called_clean() -> None:
    lines, code = audit_report.summarise(UNREACHABLE)
    assert code == 0
    assert "0 audited, 2 could not be audited" in lines[0]
    assert "NOTHING WAS AUDITED" in lines[-1]
    assert audit_report.summarise(UNREACHABLE, strict=True)[1] == 1


def test_command_line_exit_status(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_text(json.dumps(VULNERABLE))
    run = subprocess.run([sys.executable, str(SCRIPT), str(report), "1"],
                         capture_output=True, text=True)
    assert run.returncode == 1 and "GHSA-2g68-c3qc-8985" in run.stdout
    run = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "missing.json"), "2"],
                         capture_output=True, text=True)
    assert run.returncode == 1 and "gave no report (exit 2)" in run.stdout
