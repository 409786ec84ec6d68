#!/usr/bin/env python3
"""Send a cassette's requests through the proxy and check what comes back against the recording.

    python scripts/replay.py CASSETTE --target http://127.0.0.1:11435 \\
        [--metrics http://127.0.0.1:8001] [--pace original|fast] [--header 'Name: value']

Each response's status and body bytes are compared with the recording. With ``--metrics`` the
proxy's /metrics is scraped before and after, and a table shows the expected and observed
growth of ``ollama_proxy_requests_total`` and the prompt and generated tokens per model, as
the proxy's own parsers read the recorded bodies (other traffic through the proxy meanwhile
shows up as a difference). ``--pace original`` sends each request at its recorded start
offset (overlapping ones at once); ``fast`` sends them one after another without waiting.
Redacted headers are not sent; give credentials with ``--header`` (sent to ``--metrics`` too).
Exit status: 0 everything matched, 1 something did not, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from addons import cassettes  # noqa: E402
from addons.streams import parser_for  # noqa: E402
from llama_core.endpoints import INFERENCE_ENDPOINTS, NO_MODEL, canonical_model, endpoint_template  # noqa: E402

PREFIX = "ollama_proxy_"
Key = tuple[str, tuple[tuple[str, str], ...]]


@dataclass
class Result:
    interaction: cassettes.Interaction
    status: int | None = None
    body: bytes = b""
    error: str | None = None

    @property
    def expected_status(self) -> int:
        recorded = self.interaction.response
        return 502 if recorded is None else recorded.status  # no answer: the proxy's 502

    @property
    def ok(self) -> bool:
        recorded = self.interaction.response
        if self.error is not None or self.status != self.expected_status:
            return False
        return recorded is None or self.body == recorded.body

    def describe(self) -> str:
        req = self.interaction.request
        where = f"{req.method} {req.path} (recorded at {self.interaction.start:.3f}s)"
        if self.error is not None:
            return f"{where}: {self.error}"
        if self.status != self.expected_status:
            return f"{where}: status {self.status}, recorded {self.expected_status}"
        recorded = self.interaction.response.body if self.interaction.response else b""
        at = next((i for i, (a, b) in enumerate(zip(self.body, recorded, strict=False))
                   if a != b), min(len(self.body), len(recorded)))
        return (f"{where}: body differs from byte {at} "
                f"({len(self.body)} bytes, recorded {len(recorded)})")


def request_headers(
    interaction: cassettes.Interaction, extra: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    names = {k.lower() for k, _ in extra}
    kept = [(k, v) for k, v in interaction.request.headers
            if k.lower() not in cassettes.HOP_HEADERS and v != cassettes.REDACTED
            and k.lower() not in names]
    return kept + list(extra)


def send(
    target: str, interaction: cassettes.Interaction, extra: Sequence[tuple[str, str]],
    timeout: float,
) -> Result:
    url = urlsplit(target)
    result = Result(interaction)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80,
                                      timeout=timeout)
    try:
        req = interaction.request
        conn.putrequest(req.method, req.path, skip_accept_encoding=True)
        for name, value in request_headers(interaction, extra):
            conn.putheader(name, value)
        if req.body or req.method in ("POST", "PUT", "PATCH"):
            conn.putheader("Content-Length", str(len(req.body)))
        conn.endheaders(req.body or None)
        response = conn.getresponse()
        result.status = response.status
        result.body = response.read()
    except (OSError, http.client.HTTPException) as e:
        result.error = f"{type(e).__name__}: {e}"
    finally:
        conn.close()
    return result


def replay(
    interactions: Sequence[cassettes.Interaction], target: str, *, pace: str = "fast",
    headers: Sequence[tuple[str, str]] = (), timeout: float = 60.0,
) -> list[Result]:
    """Send every request; ``original`` keeps the recorded start offsets, ``fast`` sends in turn."""
    ordered = sorted(interactions, key=lambda i: i.start)
    if pace == "fast":
        return [send(target, i, headers, timeout) for i in ordered]
    futures: list[Future[Result]] = []
    with ThreadPoolExecutor(max_workers=64) as pool:
        began = time.monotonic()
        for interaction in ordered:
            delay = began + interaction.start - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(send, target, interaction, headers, timeout))
        return [f.result() for f in futures]


# -- metrics --------------------------------------------------------------------------------


def _key(name: str, **labels: str) -> Key:
    return PREFIX + name, tuple(sorted(labels.items()))


def expected_deltas(interactions: Sequence[cassettes.Interaction]) -> dict[Key, float]:
    """What the proxy should count for these interactions, read with its own parsers."""
    out: dict[Key, float] = {}

    def add(key: Key, value: float) -> None:
        out[key] = out.get(key, 0.0) + value

    for interaction in interactions:
        req, resp = interaction.request, interaction.response
        endpoint = endpoint_template(req.path)
        model = NO_MODEL
        body = cassettes.normalised_body(req.body)
        if endpoint in INFERENCE_ENDPOINTS and isinstance(body, dict):
            name = body.get("model")
            if isinstance(name, str) and name.strip():
                model = canonical_model(name)
        status = str(resp.status if resp is not None else 502)
        # A replay sends no client key: with no clients file its requests are client "".
        add(_key("requests_total", endpoint=endpoint, model=model, status=status, client=""), 1)
        if resp is None or endpoint not in INFERENCE_ENDPOINTS or not 200 <= resp.status < 300:
            continue
        parser = parser_for(cassettes.header(resp.headers, "content-type"),
                            content_encoding=cassettes.header(resp.headers, "content-encoding"))
        for chunk in resp.chunks:
            parser.feed(chunk.data, chunk.offset)
        stats = parser.finish(resp.chunks[-1].offset if resp.chunks else 0.0)
        usage = stats.usage
        prompt = usage.prompt_tokens if usage is not None else None
        generated = usage.generated_tokens if usage is not None else None
        if prompt is None and generated is None and parser.estimates_tokens:
            generated = stats.content_chunks or None
        add(_key("prompt_tokens_total", model=model, client=""), prompt or 0)
        add(_key("generated_tokens_total", model=model, client=""), generated or 0)
    return out


def scrape(metrics_url: str, headers: Sequence[tuple[str, str]] = ()) -> dict[Key, float]:
    """The samples of /metrics; ``headers`` carry the access token where one is set."""
    request = urllib.request.Request(metrics_url.rstrip("/") + "/metrics", headers=dict(headers))
    with urllib.request.urlopen(request, timeout=10) as r:
        text = r.read().decode()
    samples: dict[Key, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


WATCHED = tuple(PREFIX + n for n in
                ("requests_total", "prompt_tokens_total", "generated_tokens_total"))


def observed_deltas(before: dict[Key, float], after: dict[Key, float]) -> dict[Key, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items()
            if k[0] in WATCHED and v != before.get(k, 0.0)}


def scrape_after(metrics_url: str, before: dict[Key, float], requests: int,
                 timeout: float = 10.0,
                 headers: Sequence[tuple[str, str]] = ()) -> dict[Key, float]:
    """Scrape until the proxy has counted ``requests`` more (it counts just after the last byte)."""
    deadline = time.monotonic() + timeout
    while True:
        after = scrape(metrics_url, headers)
        counted = sum(v for k, v in observed_deltas(before, after).items()
                      if k[0] == PREFIX + "requests_total")
        if counted >= requests or time.monotonic() > deadline:
            return after
        time.sleep(0.05)


def compare(
    expected: dict[Key, float], observed: dict[Key, float]
) -> list[tuple[Key, float, float]]:
    rows = []
    for key in sorted(set(expected) | set(observed)):
        want, got = expected.get(key, 0.0), observed.get(key, 0.0)
        if want or got:
            rows.append((key, want, got))
    return rows


def label_text(key: Key) -> str:
    name, labels = key
    inner = ",".join(f'{k}="{v}"' for k, v in labels)
    return f"{name.removeprefix(PREFIX)}{{{inner}}}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="replay.py", description=__doc__.split("\n", 1)[0])
    parser.add_argument("cassette", type=Path)
    parser.add_argument("--target", required=True, help="the proxy, e.g. http://127.0.0.1:11435")
    parser.add_argument("--metrics", help="the proxy's metrics, e.g. http://127.0.0.1:8001")
    parser.add_argument("--pace", choices=("original", "fast"), default="original")
    parser.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request (60)")
    args = parser.parse_args(argv)
    for name, url in (("--target", args.target), ("--metrics", args.metrics)):
        if url is not None and (urlsplit(url).scheme != "http" or not urlsplit(url).hostname):
            parser.error(f"{name} {url!r}: expected an http:// URL")
    headers = []
    for text in args.header:
        name, sep, value = text.partition(":")
        if not sep or not name.strip():
            parser.error(f"--header {text!r}: expected 'Name: value'")
        headers.append((name.strip(), value.strip()))
    try:
        interactions = cassettes.read(args.cassette)
    except (OSError, ValueError) as e:
        parser.error(f"cassette {args.cassette}: {e}")
    if not interactions:
        parser.error(f"cassette {args.cassette} holds no interactions")

    try:
        before = scrape(args.metrics, headers) if args.metrics else None
    except (OSError, ValueError) as e:
        print(f"replay.py: cannot read {args.metrics}/metrics: {e}", file=sys.stderr)
        return 1
    results = replay(interactions, args.target, pace=args.pace, headers=headers,
                     timeout=args.timeout)
    failed = [r for r in results if not r.ok]
    for r in failed:
        print("MISMATCH " + r.describe())
    print(f"{len(results) - len(failed)}/{len(results)} responses match the recording")
    if before is None:
        return 1 if failed else 0

    try:
        after = scrape_after(args.metrics, before, len(results), headers=headers)
    except (OSError, ValueError) as e:
        print(f"replay.py: cannot read {args.metrics}/metrics: {e}", file=sys.stderr)
        return 1
    rows = compare(expected_deltas(interactions), observed_deltas(before, after))
    width = max(len(label_text(k)) for k, _, _ in rows)
    print(f"{'metric':<{width}}  {'expected':>9}  {'observed':>9}")
    bad = 0
    for key, want, got in rows:
        mark = "" if want == got else "  <- differs"
        bad += want != got
        print(f"{label_text(key):<{width}}  {want:>9g}  {got:>9g}{mark}")
    print(json.dumps({"responses_ok": len(results) - len(failed), "responses": len(results),
                      "metrics_differing": bad}))
    return 1 if failed or bad else 0


if __name__ == "__main__":
    sys.exit(main())
