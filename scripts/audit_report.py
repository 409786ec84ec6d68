#!/usr/bin/env python3
"""Summarise a pip-audit JSON report honestly: how many packages were really audited.

pip-audit says "No known vulnerabilities found" even when it could not look up a single
package (no network, the vulnerability service unreachable). This counts audited, skipped and
vulnerable packages and exits 1 when a known vulnerability was found (or, with
LLAMA_METRICS_AUDIT_STRICT=1, when a package could not be audited).

    python scripts/audit_report.py REPORT.json PIP_AUDIT_EXIT_STATUS
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def summarise(report: dict[str, Any], strict: bool = False) -> tuple[list[str], int]:
    """The lines to print and the exit status for one pip-audit JSON report."""
    deps = report.get("dependencies", [])
    skipped = [d for d in deps if "skip_reason" in d]
    vulnerable = [d for d in deps if d.get("vulns")]
    audited = len(deps) - len(skipped)
    lines = [
        f"audit: {len(deps)} pinned packages in requirements.lock; {audited} audited, "
        f"{len(skipped)} could not be audited, {len(vulnerable)} with known vulnerabilities"
    ]
    for d in vulnerable:
        for v in d["vulns"]:
            fixes = ", ".join(v.get("fix_versions") or []) or "no fixed release"
            lines.append(f"  {d['name']} {d.get('version')}: {v.get('id')} (fixed in: {fixes})")
    if skipped:
        lines.append(f"  not audited, e.g.: {skipped[0]['skip_reason']}")
        if audited == 0:
            lines.append("audit: the vulnerability service could not be reached from this "
                         "machine: NOTHING WAS AUDITED")
    failed = bool(vulnerable) or (bool(skipped) and strict)
    return lines, 1 if failed else 0


def main(argv: list[str]) -> int:
    path, status = argv[1], int(argv[2])
    try:
        with open(path) as f:
            report = json.load(f)
    except (OSError, ValueError) as exc:
        print(f"audit: pip-audit gave no report (exit {status}): {exc}")
        return 1
    lines, code = summarise(report, os.environ.get("LLAMA_METRICS_AUDIT_STRICT") == "1")
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
