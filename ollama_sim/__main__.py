"""``python -m ollama_sim``: run the simulator until Ctrl-C or SIGTERM."""

from __future__ import annotations

import sys

from ollama_sim.cli import main

sys.exit(main())
