"""addons/lifecycle.py: which requests only load or unload a model, before and after."""

from __future__ import annotations

import pytest

from addons.lifecycle import action_of, expected_action, keep_alive_is_zero


@pytest.mark.parametrize(("value", "zero"), [
    (0, True), (0.0, True), (1e-10, True), ("0", True), ("0s", True), ("0m", True),
    ("-0", True), ("0.0h", True), (None, False), (0.5, False), (1, False), ("500ms", False),
    (-1, False), ("-1m", False), (True, False), (False, False), ("5", False), ("soon", False),
])
def test_keep_alive_zero_is_a_zero_go_duration(value: object, zero: bool) -> None:
    assert keep_alive_is_zero(value) is zero


@pytest.mark.parametrize(("endpoint", "body", "action"), [
    ("/api/generate", {"model": "m"}, "load"),
    ("/api/generate", {"model": "m", "prompt": ""}, "load"),
    ("/api/generate", {"model": "m", "prompt": None, "keep_alive": 0}, "unload"),
    ("/api/generate", {"model": "m", "prompt": "hi", "keep_alive": 0}, None),
    ("/api/chat", {"model": "m", "messages": []}, "load"),
    ("/api/chat", {"model": "m", "keep_alive": "0s"}, "unload"),
    ("/api/chat", {"model": "m", "messages": [{"role": "user", "content": ""}]}, None),
    ("/api/embed", {"model": "m", "input": []}, "load"),
    ("/api/embed", {"model": "m", "input": [""]}, None),  # one (empty) input is embedded
    ("/api/embed", {"model": "m", "keep_alive": 0}, "load"),  # embed never unloads
    ("/api/embeddings", {"model": "m", "prompt": ""}, "load"),
    ("/v1/completions", {"model": "m", "prompt": ""}, "load"),
    ("/v1/chat/completions", {"model": "m", "messages": []}, None),  # a 400 there
])
def test_expected_action(endpoint: str, body: dict, action: str | None) -> None:
    assert expected_action(endpoint, body) == action


def test_the_answer_decides() -> None:
    assert action_of("/api/chat", None, 200, "unload") == "unload"  # 0.5 s before 0.11.8
    assert action_of("/api/chat", "load", 200, "stop") is None
    assert action_of("/api/chat", "load", 404, None) is None
    assert action_of("/api/embed", "load", 200, None) == "load"
    assert action_of("/api/generate", "load", 200, None) is None
