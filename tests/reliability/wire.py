"""What a client received, byte for byte, up to wherever it was cut; counters before and after."""

from __future__ import annotations

import http.client
import json
import re
from dataclasses import dataclass
from pathlib import Path

import psutil

from llama_core import catalogue

LABEL = "llama3.2:latest"
CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "hello there"}]}
GENERATE = {"model": "llama3.2", "prompt": "why is the sky blue", "stream": False}

# Values that differ between two otherwise identical answers: clocks and a response counter.
_VOLATILE = (
    (re.compile(rb'"created_at":"[^"]*"'), rb'"created_at":"T"'),
    (re.compile(rb'"(total_duration|load_duration|prompt_eval_duration|eval_duration)":\d+'),
     rb'"\1":0'),
    (re.compile(rb'"created":\d+'), rb'"created":0'),
    (re.compile(rb'"id":"(chatcmpl|cmpl)-\d+"'), rb'"id":"\1-N"'),
)


@dataclass(slots=True)
class Answer:
    """One response as a client saw it."""

    status: int  # 0: no response at all
    content_type: str
    body: bytes
    complete: bool  # the body ended where its framing said it would
    error: str = ""  # what ended it otherwise

    def json(self) -> dict:
        value = json.loads(self.body)
        assert isinstance(value, dict)
        return value


def exchange(
    port: int,
    path: str,
    body: bytes | dict | None,
    headers: dict[str, str] | None = None,
    *,
    method: str = "POST",
    timeout: float = 60.0,
) -> Answer:
    """Send one request on a fresh connection; read every byte that comes back."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        try:
            conn.request(method, path, body=data, headers={
                "Content-Type": "application/json", **(headers or {})})
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            return Answer(0, "", b"", False, type(e).__name__)
        received = bytearray()
        error = ""
        try:
            while chunk := response.read1(1 << 20):
                received += chunk
        except (OSError, http.client.HTTPException) as e:
            error = type(e).__name__
        complete = not error and not response.length  # None (chunked, close) or 0 left
        if not error and response.length:
            error = f"{response.length} bytes short"
        return Answer(response.status, response.getheader("Content-Type", ""), bytes(received),
                      complete, error)
    finally:
        conn.close()


def normalize(body: bytes) -> bytes:
    for pattern, replacement in _VOLATILE:
        body = pattern.sub(replacement, body)
    return body


def assert_same_bytes(direct: Answer, through: Answer, *, cut_inside_line: bool = False) -> None:
    """The proxy passed on exactly what the upstream sent (clocks aside).

    ``cut_inside_line``: the upstream cut a line in half, at a length that depends on how
    many digits its clocks had, so only the common prefix is compared.
    """
    a, b = normalize(direct.body), normalize(through.body)
    if cut_inside_line:
        assert abs(len(a) - len(b)) < 24, (len(a), len(b))
        k = min(len(a), len(b))
        assert a[:k] == b[:k]
        assert a.count(b"\n") == b.count(b"\n")
    else:
        assert b == a


def samples_delta(before: dict, after: dict, name: str, **labels: str) -> float:
    """Growth of one series; its ``client`` label, where it has one, is "" unless given."""
    series = catalogue.BY_NAME.get("ollama_proxy_" + name)
    if series is not None and "client" in series.labels:
        labels = {"client": "", **labels}
    key = ("ollama_proxy_" + name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def family_delta(before: dict, after: dict, name: str, **labels: str) -> float:
    """Growth of the sum over every series of ``name`` whose labels include ``labels``."""
    want = set(labels.items())

    def total(samples: dict) -> float:
        return sum(v for (n, lab), v in samples.items()
                   if n == "ollama_proxy_" + name and want <= set(lab))

    return total(after) - total(before)


def requests_total(samples: dict) -> float:
    return sum(v for (n, _), v in samples.items() if n == "ollama_proxy_requests_total")


def open_fds(pid: int) -> int:
    return psutil.Process(pid).num_fds()


def peak_rss_bytes(pid: int) -> int:
    """The process's high-water mark of resident memory (Linux ``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for process {pid}")
