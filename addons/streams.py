"""Incremental parsers for Ollama's wire formats: bytes in, token counts and timings out.

Nothing here imports mitmproxy. A parser is fed the response body in whatever pieces the
network delivered (a JSON line or an SSE event may be split anywhere, also inside a UTF-8
sequence) together with the ``perf_counter()`` reading of their arrival, and keeps a
``StreamStats``. Parsers never raise on bad input: they count it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from .answer_json import loads_answer
from .codings import CodingError, Decoder
from .reports import Usage, native_usage, openai_usage, placeholder_usage
from .tail_counts import Tail, trailing_counts

logger = logging.getLogger(__name__)

# Non-streamed bodies are kept to be parsed once at the end; past this size only their last
# bytes are kept, and the counts are read from there (addons/tail_counts.py).
MAX_JSON_BODY = 32 * 1024 * 1024
# Why a response's tokens could not be counted (StreamStats.uncounted; the series
# ollama_proxy_uncounted_requests_total): never a silent 0.
TOO_LARGE = "body_too_large"  # over MAX_JSON_BODY, and its end held no counts
ENCODING = "content_encoding"  # a coding we cannot read, or bytes not in it


@dataclass(slots=True)
class StreamStats:
    """What one response body said, as far as it has been read."""

    content_chunks: int = 0
    first_token_at: float | None = None
    last_token_at: float | None = None
    usage: Usage | None = None
    done: bool = False
    done_reason: str | None = None
    error: str | None = None
    malformed: int = 0
    body_bytes: int = 0
    text: list[str] | None = None  # generated text, only when capturing is asked for
    gaps: list[float] = field(default_factory=list)
    uncounted: str | None = None  # why the body could not be read for counts (TOO_LARGE ...)


def _error_text(value: object) -> str:
    if isinstance(value, dict):
        return str(value.get("message") or value)
    return str(value)


class LineBuffer:
    """Splits a byte stream into lines, holding a partial last line until its end arrives."""

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b""

    @property
    def pending(self) -> bool:
        return bool(self._tail)

    def feed(self, data: bytes) -> list[bytes]:
        if self._tail:
            data = self._tail + data
        lines = data.split(b"\n")
        self._tail = lines.pop()
        return lines

    def flush(self) -> bytes:
        tail, self._tail = self._tail, b""
        return tail


class Parser:
    """Base of the body parsers: counts bytes, times content chunks, never raises."""

    # A stream without a final report can still be counted from its content chunks.
    estimates_tokens = False
    # A stream whose format has a last event ([DONE], done:true, message_stop ...).
    has_end = False

    def __init__(
        self,
        *,
        content_encoding: str = "",
        capture_text: bool = False,
    ) -> None:
        self.stats = StreamStats(text=[] if capture_text else None)
        self._skip = False  # an encoding we cannot read, or a parser failure: count bytes only
        self._decoder: Decoder | None = None
        if not content_encoding:  # nearly every answer: nothing to undo
            return
        try:
            self._decoder = Decoder(content_encoding)
        except CodingError:
            logger.info("response with content-encoding %r: passed on, not counted",
                        content_encoding)
            self._decoder = None
            self._skip = True
            self.stats.uncounted = ENCODING
        else:
            if self._decoder.identity:
                self._decoder = None

    def feed(self, data: bytes, now: float) -> None:
        self.stats.body_bytes += len(data)
        if self._skip:
            return
        try:
            self._feed(data if self._decoder is None else self._decoder(data), now)
        except CodingError as e:
            self._skip = True
            self.stats.uncounted = ENCODING
            logger.info("response body not in its content-encoding (%s): not counted", e)
        except Exception:  # a parser bug must never reach the proxy
            self._skip = True
            self.stats.malformed += 1
            logger.exception("could not parse a response body; counting it as malformed")

    def finish(self, now: float) -> StreamStats:
        if not self._skip:
            try:
                self._finish(now)
            except Exception:
                self.stats.malformed += 1
                logger.exception("could not parse the end of a response body")
        return self.stats

    @property
    def ended_early(self) -> bool:
        """Read to its end without the last event its format promises (after ``finish``)."""
        return self.has_end and not self._skip and not self.stats.done

    def _feed(self, data: bytes, now: float) -> None:
        raise NotImplementedError

    def _finish(self, now: float) -> None:
        pass

    def _object(self, raw: bytes) -> dict | None:
        """One streamed JSON object; None when it is malformed or an error (both recorded)."""
        try:
            obj = json.loads(raw)
        except ValueError:
            self.stats.malformed += 1
            return None
        if not isinstance(obj, dict):
            self.stats.malformed += 1
            return None
        if "error" in obj:
            self.stats.error = _error_text(obj["error"])
            return None
        return obj

    def _token(self, now: float, text: str | None) -> None:
        s = self.stats
        if s.last_token_at is None:
            s.first_token_at = now
        else:
            s.gaps.append(now - s.last_token_at)
        s.last_token_at = now
        s.content_chunks += 1
        if s.text is not None and text:
            s.text.append(text)


class PassthroughParser(Parser):
    """A body we do not read: only its size is counted."""

    def _feed(self, data: bytes, now: float) -> None:
        pass


class JsonParser(Parser):
    """A non-streamed JSON body, parsed once when complete (native, OpenAI, Anthropic)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._body = bytearray()
        self._tail: Tail | None = None  # past MAX_JSON_BODY: only the end is kept

    def _feed(self, data: bytes, now: float) -> None:
        if self._tail is not None:
            self._tail.feed(data)
        elif len(self._body) + len(data) <= MAX_JSON_BODY:
            self._body += data
        else:
            self._tail = Tail()
            self._tail.feed(bytes(self._body[-self._tail.size:]) + data)
            self._body = bytearray()

    def _finish(self, now: float) -> None:
        if self._tail is not None:
            self._finish_from_tail(self._tail.bytes())
            return
        if not self._body:
            return
        try:
            obj = loads_answer(self._body)  # its embedding vectors are skipped, not built
        except ValueError:
            self.stats.malformed += 1
            return
        if not isinstance(obj, dict):
            self.stats.malformed += 1
            return
        s = self.stats
        if "error" in obj:
            s.error = _error_text(obj["error"])
        text = _json_text(obj)
        if text is not None or obj.get("tool_calls") or _has_tool_calls(obj):
            self._token(now, text)
        if "usage" in obj:
            s.usage = openai_usage(obj["usage"])
            choices = obj.get("choices")
            if isinstance(choices, list) and choices and isinstance(choices[0], dict):
                s.done_reason = choices[0].get("finish_reason")
            s.done_reason = s.done_reason or obj.get("stop_reason")
        elif obj.get("done") is True or "embeddings" in obj or "prompt_eval_count" in obj:
            s.usage = native_usage(obj)
            s.done_reason = obj.get("done_reason")
        s.done = True

    def _finish_from_tail(self, tail: bytes) -> None:
        """A body too big to keep: its counts are its last keys, or it is not counted."""
        s = self.stats
        found = trailing_counts(tail)
        if found is None:
            s.uncounted = TOO_LARGE
            logger.info("a %d-byte answer ends without counts: not counted", s.body_bytes)
            return
        if "usage" in found:
            s.usage = openai_usage(found["usage"])
        else:
            s.usage = native_usage(found)
            if s.usage.prompt_tokens is None and s.usage.generated_tokens is None:
                s.uncounted = TOO_LARGE  # durations only: no count was in its end
        s.done = True


def _json_text(obj: dict) -> str | None:
    if isinstance(obj.get("response"), str):
        return obj["response"]
    message = obj.get("message")
    if isinstance(message, dict) and isinstance(message.get("content"), str):
        return message["content"]
    choices = obj.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        choice = choices[0]
        if isinstance(choice.get("text"), str):
            return choice["text"]
        message = choice.get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            return message["content"]
    return None


def _has_tool_calls(obj: dict) -> bool:
    message = obj.get("message")
    return isinstance(message, dict) and bool(message.get("tool_calls"))


class NdjsonParser(Parser):
    """Ollama's native stream: one JSON object a line, the last with ``done: true``."""

    estimates_tokens = True
    has_end = True

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._lines = LineBuffer()
        # A plain body (no coding to undo) and no text kept, both fixed from here: its common
        # chunk is counted in one step by the stream tap (``stream_tap.native_stream``).
        self.plain = self._decoder is None and self.stats.text is None

    def _feed(self, data: bytes, now: float) -> None:
        # Ollama flushes one whole line per token, and it usually arrives whole.
        if not self._lines.pending and data.find(b"\n") == len(data) - 1:
            self._line(data[:-1], now)
            return
        for line in self._lines.feed(data):
            self._line(line, now)

    def _finish(self, now: float) -> None:
        tail = self._lines.flush()
        if tail.strip():
            self._line(tail, now)

    def _line(self, line: bytes, now: float) -> None:
        # Fast path for the common content chunk. Ollama (Go's encoder) writes compact JSON
        # and a non-final chunk ends with ``"done":false}``; that cannot end a line inside a
        # JSON string (its quotes would be escaped), so such a line is a content chunk, and a
        # non-empty "content"/"response" makes it a token. Anything else gets the full parse.
        if (
            line.endswith(b'"done":false}')
            and self.stats.text is None
            and b'"content":""' not in line
            and b'"response":""' not in line
            and line[:1] == b"{"
        ):
            self._token(now, None)
            return
        if not line.strip():
            return
        obj = self._object(line)
        if obj is None:
            return
        message = obj.get("message")
        if isinstance(message, dict):
            text = message.get("content")
            produced = bool(text or message.get("thinking") or message.get("tool_calls"))
        else:
            text = obj.get("response")
            produced = bool(text) or bool(obj.get("thinking"))
        if produced and obj.get("done") is not True:
            self._token(now, text if isinstance(text, str) else None)
        if obj.get("done") is True:
            self.stats.done = True
            self.stats.done_reason = obj.get("done_reason")
            self.stats.usage = native_usage(obj)


class SseParser(Parser):
    """Server-sent events of the OpenAI- and Anthropic-compatible endpoints."""

    estimates_tokens = True
    has_end = True

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._lines = LineBuffer()

    def _feed(self, data: bytes, now: float) -> None:
        for line in self._lines.feed(data):
            if line.startswith(b"data:"):
                if self._fast_delta(line, now):
                    continue
                self._data(line[5:].strip(), now)

    def _fast_delta(self, line: bytes, now: float) -> bool:
        """A plain OpenAI content delta, as Ollama writes it, counted without a full parse.

        Like the NDJSON fast path, it relies on compact JSON: ``"finish_reason":null}]}``
        cannot occur inside a string. Anything unusual returns False for the full parse.
        """
        # (bytes.find, not ``in``: the same answer in half the time, on every chunk)
        if (
            self.stats.text is not None
            or line.find(b'"finish_reason":null}]}') < 0
            or line.find(b'"content":"') < 0
            or line.find(b'"usage"') >= 0
            or line.find(b'"error"') >= 0
            or line.find(b'"tool_calls"') >= 0
            or line.count(b'"index":') != 1  # one choice
            or line.rstrip()[-1:] != b"}"
        ):
            return False
        if line.find(b'"content":""') < 0 or (
            line.find(b'"reasoning":"') >= 0 and line.find(b'"reasoning":""') < 0
        ):
            self._token(now, None)
        return True

    def _finish(self, now: float) -> None:
        tail = self._lines.flush()
        if tail.startswith(b"data:"):
            self._data(tail[5:].strip(), now)

    def _data(self, payload: bytes, now: float) -> None:
        if payload == b"[DONE]":
            self.stats.done = True
            return
        obj = self._object(payload)
        if obj is None:
            return
        choices = obj.get("choices")
        if choices is not None:
            self._chat_chunk(obj, choices, now)
        elif "type" in obj:
            self._typed_event(obj, now)

    def _chat_chunk(self, obj: dict, choices: object, now: float) -> None:
        if isinstance(choices, list):
            for choice in choices:
                if not isinstance(choice, dict):
                    continue
                delta = choice.get("delta")
                if isinstance(delta, dict):
                    text = delta.get("content")
                    if text or delta.get("reasoning") or delta.get("reasoning_content") or (
                        delta.get("tool_calls")
                    ):
                        self._token(now, text if isinstance(text, str) else None)
                elif choice.get("text"):  # /v1/completions
                    self._token(now, str(choice["text"]))
                if choice.get("finish_reason"):
                    self.stats.done_reason = choice["finish_reason"]
        if isinstance(choices, list) and choices and placeholder_usage(obj.get("usage")):
            return
        usage = openai_usage(obj.get("usage"))
        if usage is not None:
            self.stats.usage = usage

    def _typed_event(self, obj: dict, now: float) -> None:
        """OpenAI Responses (``response.*``) and Anthropic Messages events."""
        kind = obj["type"]
        if kind == "response.completed" and isinstance(obj.get("response"), dict):
            self.stats.usage = openai_usage(obj["response"].get("usage"))
            self.stats.done = True
        elif kind == "content_block_delta" and isinstance(obj.get("delta"), dict):
            delta = obj["delta"]
            text = delta.get("text")
            if text or delta.get("thinking") or delta.get("partial_json"):
                self._token(now, text if isinstance(text, str) else None)
        elif isinstance(kind, str) and kind.endswith(".delta") and obj.get("delta"):
            delta = obj["delta"]
            self._token(now, delta if isinstance(delta, str) else None)
        elif kind == "message_start" and isinstance(obj.get("message"), dict):
            # Ollama's input_tokens here is the first chunk's prompt_eval_count (0, 0.14.0 to
            # 0.15.4) or a characters/4 estimate (0.15.5 on): a fallback only, and never a 0.
            usage = openai_usage(obj["message"].get("usage"))
            if usage is not None and not usage.prompt_tokens:
                usage.prompt_tokens = None
            self.stats.usage = usage
        elif kind == "message_delta":
            usage = openai_usage(obj.get("usage"))
            if usage is not None:
                start = self.stats.usage
                if usage.prompt_tokens is None and start is not None:
                    usage.prompt_tokens = start.prompt_tokens
                    usage.cached_prompt_tokens = start.cached_prompt_tokens
                self.stats.usage = usage
            if isinstance(obj.get("delta"), dict):
                self.stats.done_reason = obj["delta"].get("stop_reason")
        elif kind == "message_stop":
            self.stats.done = True


def parser_for(
    content_type: str,
    *,
    content_encoding: str = "",
    capture_text: bool = False,
) -> Parser:
    """The parser for a response of this content type."""
    mime = content_type.split(";", 1)[0].strip().lower()
    cls: type[Parser]
    if mime == "application/x-ndjson":
        cls = NdjsonParser
    elif mime == "text/event-stream":
        cls = SseParser
    elif mime == "application/json":
        cls = JsonParser
    else:
        cls = PassthroughParser
    return cls(content_encoding=content_encoding, capture_text=capture_text)
