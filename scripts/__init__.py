"""The command-line tools run from the checkout (``python scripts/NAME.py``), importable as
``scripts.NAME`` from the tests and from each other; not installed into the venv."""
