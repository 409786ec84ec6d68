"""Alert state on disk: one small JSON file, written atomically with mode 0600.

A write goes to a temporary file beside the target (created 0600), is flushed to disk and
renamed over the target, so a crash leaves either the old state or the new one. A file that
cannot be read or parsed is logged and treated as empty; the next write replaces it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


class AlertStore:
    """Loads and saves the alert manager's state at ``path``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._failing = False

    def load(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            logger.warning("alert state %s unreadable, starting empty: %s", self.path, exc)
            return None
        try:
            data = json.loads(text)
        except ValueError as exc:
            logger.warning("alert state %s is not JSON, starting empty: %s", self.path, exc)
            return None
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            logger.warning("alert state %s has an unknown format, starting empty", self.path)
            return None
        return data

    def save(self, state: dict[str, Any]) -> bool:
        """Write ``state``; False (logged once per streak of failures) when it could not."""
        body = json.dumps({"version": FORMAT_VERSION, **state}, indent=1).encode()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            if not self.path.parent.exists():
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.fchmod(fd, 0o600)  # an old temporary file keeps its mode through O_TRUNC
                os.write(fd, body)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            if not self._failing:
                logger.error("cannot write alert state %s: %s", self.path, exc)
            self._failing = True
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            return False
        if self._failing:
            logger.info("writing alert state %s works again", self.path)
        self._failing = False
        return True
