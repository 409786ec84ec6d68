#!/usr/bin/env python3
"""Run the Ollama simulator: ``python scripts/ollama_sim.py ...`` is ``python -m ollama_sim ...``.

The simulator is the ``ollama_sim`` package (see its docstring for what it speaks, its faults
and its control endpoints). Python puts this file's folder first on ``sys.path``, where this
file would shadow the package of the same name, so it hands over to ``python -m ollama_sim``
in the same process (exec: same pid, same signals, same output) instead of importing it.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    os.execv(sys.executable, [sys.executable, "-m", "ollama_sim", *sys.argv[1:]])
