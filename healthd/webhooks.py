"""Alert notifications to webhooks: generic JSON or Slack-compatible, retried with backoff.

Delivery runs on its own thread, never on the scheduler's: ``submit`` only queues. Each URL
gets each notification once; a connection error, timeout, 408, 429 or 5xx is retried up to
``retries`` times, waiting ``backoff_s``, then twice that, and so on (capped at
``max_backoff_s``); any other 4xx is not retried. The format of a URL is its own ``format``,
else ``default_format``; ``auto`` means Slack for ``hooks.slack.com`` and URLs ending in
``/slack`` (Mattermost, Discord), generic JSON for the rest.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from healthd.alerts import Notification
from healthd.client import ProbeError, request
from healthd.config import Webhook

logger = logging.getLogger(__name__)

SOURCE = "llama-metrics-healthd"
_STOP = object()


def resolve_format(hook: Webhook, default: str = "auto") -> str:
    fmt = hook.format if hook.format != "auto" else default
    if fmt != "auto":
        return fmt
    parts = urlsplit(hook.url)
    slack = parts.hostname == "hooks.slack.com" or parts.path.rstrip("/").endswith("/slack")
    return "slack" if slack else "generic"


def _clock_text(ts: float | None) -> str:
    return "?" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _span(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes}m" if hours else f"{minutes}m {secs}s" if minutes else f"{secs}s"


def message(n: Notification, host: str) -> str:
    """One line a person reads: what, where, since when."""
    if n.event == "resolved":
        return (f"[RESOLVED] {n.check} is ok again on {host} after "
                f"{_span(n.at - n.started_at)} (was {n.severity}: {n.detail})")
    tag = "FIRING, still" if n.repeat else f"FIRING, now {n.severity}" if n.escalated else "FIRING"
    return (f"[{tag}] {n.check} is {n.severity} on {host}: {n.detail} "
            f"(failing since {_clock_text(n.started_at)}, {n.failures} checks)")


def generic_payload(n: Notification, host: str) -> dict[str, Any]:
    return {
        "source": SOURCE, "host": host, "event": n.event, "repeat": n.repeat,
        "escalated": n.escalated, "check": n.check, "severity": n.severity,
        "detail": n.detail, "failures": n.failures, "started_at": n.started_at,
        "fired_at": n.fired_at, "resolved_at": n.resolved_at, "at": n.at,
        "text": message(n, host),
    }


def slack_payload(n: Notification, host: str) -> dict[str, Any]:
    icon = (":white_check_mark:" if n.event == "resolved"
            else ":red_circle:" if n.severity == "critical" else ":large_yellow_circle:")
    return {"text": f"{icon} {message(n, host)}"}


def redact(url: str) -> str:
    """A webhook URL for logs: its path often holds the secret (Slack's does)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" + ("/..." if parts.path.strip("/") else "")


def _retryable(status: int) -> bool:
    return status >= 500 or status in (408, 429)


class WebhookSender:
    """Delivers notifications to every configured webhook from one background thread."""

    def __init__(
        self,
        hooks: Sequence[Webhook],
        *,
        default_format: str = "auto",
        timeout: float = 5.0,
        retries: int = 3,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        host: str | None = None,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self.hooks = [(h.url, resolve_format(h, default_format)) for h in hooks]
        self.host = host or socket.gethostname()
        self.delivered = 0  # per URL and notification
        self.failed = 0
        self._timeout = timeout
        self._retries = retries
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._closing = threading.Event()
        self._sleep = sleep if sleep is not None else self._closing.wait
        self._queue: queue.Queue[object] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
            self._thread.start()

    def submit(self, notification: Notification) -> None:
        """Queue a notification; returns at once."""
        if not self.hooks:
            return
        with self._idle:
            self._pending += 1
        self._queue.put(notification)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted notification was delivered or given up on."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (one try each, no more waiting), then stop the thread."""
        self._closing.set()
        self._queue.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while (item := self._queue.get()) is not _STOP:
            assert isinstance(item, Notification)
            try:
                self.deliver(item)
            except Exception:
                logger.exception("delivering the %s notification for %s failed", item.event,
                                 item.check)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def deliver(self, notification: Notification) -> dict[str, bool]:
        """Send to every URL now (with retries); whether each one took it."""
        results = {}
        for url, fmt in self.hooks:
            build = slack_payload if fmt == "slack" else generic_payload
            results[url] = self._post(url, build(notification, self.host), notification)
            if results[url]:
                self.delivered += 1
            else:
                self.failed += 1
        return results

    def _post(self, url: str, payload: dict[str, Any], n: Notification) -> bool:
        shown = redact(url)
        what = f"{n.event} notification for {n.check} to {shown}"
        for attempt in range(self._retries + 1):
            try:
                response = request(url, timeout=self._timeout, method="POST", payload=payload)
            except ProbeError as exc:
                problem = str(exc).replace(url, shown)
            else:
                if response.ok:
                    logger.info("sent the %s", what)
                    return True
                problem = f"{shown} answered {response.status}"
                if not _retryable(response.status):
                    logger.error("giving up on the %s: %s", what, problem)
                    return False
            if attempt == self._retries or self._closing.is_set():
                break
            delay = min(self._backoff_s * 2**attempt, self._max_backoff_s)
            logger.warning("%s failed (%s); retry in %g s", what, problem, delay)
            self._sleep(delay)
        logger.error("giving up on the %s after %d attempt(s): %s", what, attempt + 1, problem)
        return False
