"""Child process for the kill -9 test: write history without end, printing committed counts.

Run as ``python -m tests.llama_core.history.history_child DB_PATH BATCH_SIZE`` from the
repository root.
After each batch is committed it prints ``writer.committed`` on its own line.
"""

from __future__ import annotations

import sys
import time

from llama_core.history.writer import HistoryWriter
from llama_core.record import RequestRecord


def main(argv: list[str]) -> None:
    path, batch_size = argv[1], int(argv[2])
    writer = HistoryWriter(path, batch_size=batch_size, flush_interval=0.05)
    writer.start()
    n = 0
    while True:
        for _ in range(batch_size):
            writer.submit(
                RequestRecord(
                    started_at=time.time(),
                    endpoint="/api/chat",
                    model="llama3.2:1b",
                    status=200,
                    generated_tokens=n,
                    response="x" * 200,  # some bulk, so a kill tends to land mid-write
                )
            )
            n += 1
        if not writer.flush(timeout=10.0):
            sys.exit("history_child: flush timed out")
        print(writer.committed, flush=True)


if __name__ == "__main__":
    main(sys.argv)
