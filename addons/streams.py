"""Incremental parsers for Ollama's wire formats: bytes in, token counts and timings out.

Nothing here imports mitmproxy. A parser is fed the response body in whatever pieces the
network delivered (a JSON line or an SSE event may be split anywhere, also inside a UTF-8
sequence) together with the ``perf_counter()`` reading of their arrival, and keeps a
``StreamStats``. Parsers never raise on bad input: they count it.
"""

from __future__ import annotations

import json
import logging
import zlib
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

NS = 1e-9
# Non-streamed bodies are kept to be parsed once at the end; past this size they are
# counted but not parsed (a multi-megabyte embedding batch still fits).
MAX_JSON_BODY = 32 * 1024 * 1024


@dataclass(slots=True)
class Usage:
    """What the server reported about a request (native final chunk or OpenAI ``usage``)."""

    prompt_tokens: int | None = None
    generated_tokens: int | None = None
    total_duration_s: float | None = None
    load_duration_s: float | None = None
    prompt_eval_duration_s: float | None = None
    eval_duration_s: float | None = None


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


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _seconds(value: object) -> float | None:
    return value * NS if isinstance(value, int | float) and not isinstance(value, bool) else None


def native_usage(obj: dict) -> Usage:
    """The statistics of an Ollama final chunk; every field is optional."""
    return Usage(
        prompt_tokens=_int(obj.get("prompt_eval_count")),
        generated_tokens=_int(obj.get("eval_count")),
        total_duration_s=_seconds(obj.get("total_duration")),
        load_duration_s=_seconds(obj.get("load_duration")),
        prompt_eval_duration_s=_seconds(obj.get("prompt_eval_duration")),
        eval_duration_s=_seconds(obj.get("eval_duration")),
    )


def openai_usage(usage: object) -> Usage | None:
    """OpenAI ``usage`` (chat/completions/embeddings) or Responses/Anthropic token fields."""
    if not isinstance(usage, dict):
        return None
    prompt = _int(usage.get("prompt_tokens"))
    if prompt is None:
        prompt = _int(usage.get("input_tokens"))
    generated = _int(usage.get("completion_tokens"))
    if generated is None:
        generated = _int(usage.get("output_tokens"))
    return Usage(prompt_tokens=prompt, generated_tokens=generated)


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


class _Decoder:
    """Undoes gzip/deflate content-encoding incrementally; identity passes through."""

    __slots__ = ("_z",)

    @property
    def identity(self) -> bool:
        return self._z is None

    def __init__(self, encoding: str) -> None:
        enc = encoding.strip().lower()
        if enc in ("gzip", "x-gzip"):
            self._z: zlib._Decompress | None = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            self._z = zlib.decompressobj()
        elif enc in ("", "identity"):
            self._z = None
        else:
            raise ValueError(f"content-encoding {encoding!r} is not parsed")

    def __call__(self, data: bytes) -> bytes:
        return self._z.decompress(data) if self._z is not None else data


class Parser:
    """Base of the body parsers: counts bytes, times content chunks, never raises."""

    # A stream without a final report can still be counted from its content chunks.
    estimates_tokens = False

    def __init__(
        self,
        *,
        content_encoding: str = "",
        capture_text: bool = False,
    ) -> None:
        self.stats = StreamStats(text=[] if capture_text else None)
        self._skip = False  # an encoding we cannot read, or a parser failure: count bytes only
        try:
            self._decoder: _Decoder | None = _Decoder(content_encoding)
        except ValueError:
            logger.info("response with content-encoding %r: counted, not parsed", content_encoding)
            self._decoder = None
            self._skip = True
        else:
            if self._decoder.identity:
                self._decoder = None

    def feed(self, data: bytes, now: float) -> None:
        self.stats.body_bytes += len(data)
        if self._skip:
            return
        try:
            self._feed(data if self._decoder is None else self._decoder(data), now)
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

    def _feed(self, data: bytes, now: float) -> None:
        if len(self._body) + len(data) <= MAX_JSON_BODY:
            self._body += data
        else:
            self._skip = True  # too big to keep; counted by size only

    def _finish(self, now: float) -> None:
        if not self._body:
            return
        try:
            obj = json.loads(self._body)
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

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._lines = LineBuffer()

    def _feed(self, data: bytes, now: float) -> None:
        # The common case: Ollama flushes one whole line per token, and it arrives whole.
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
        if (
            self.stats.text is not None
            or b'"finish_reason":null}]}' not in line
            or b'"content":"' not in line
            or b'"usage"' in line
            or b'"error"' in line
            or b'"tool_calls"' in line
            or line.count(b'"index":') != 1  # one choice
            or line.rstrip()[-1:] != b"}"
        ):
            return False
        if b'"content":""' not in line or (
            b'"reasoning":"' in line and b'"reasoning":""' not in line
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
            self.stats.usage = openai_usage(obj["message"].get("usage"))
        elif kind == "message_delta":
            usage = openai_usage(obj.get("usage"))
            if usage is not None:
                prompt = self.stats.usage.prompt_tokens if self.stats.usage else None
                usage.prompt_tokens = usage.prompt_tokens or prompt
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
