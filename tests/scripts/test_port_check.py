"""scripts/port_check.py: a port in TIME_WAIT is free, a listening one is named with its holder."""

from __future__ import annotations

import os
import socket

import psutil
import pytest

from scripts import port_check
from tests.support.ports import time_wait_port


def test_a_port_in_time_wait_is_free_for_a_server() -> None:
    port = time_wait_port()
    states = {c.status for c in psutil.net_connections(kind="tcp")
              if c.laddr and c.laddr.port == port}
    assert psutil.CONN_TIME_WAIT in states and psutil.CONN_LISTEN not in states
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))  # how the old check bound: "already in use"
    assert port_check.bind_problem("127.0.0.1", port) is None


def test_a_listening_port_is_named_with_its_holder() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        problem = port_check.bind_problem("127.0.0.1", port)
    name = psutil.Process().name()
    assert problem == f"is already in use by pid {os.getpid()} ({name})"


def test_a_bound_port_nobody_listens_on_is_in_use_without_a_holder() -> None:
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))  # bound, not listening: no holder to name
        port = int(bound.getsockname()[1])
        assert port_check.bind_problem("127.0.0.1", port) == "is already in use"


def test_an_address_this_machine_lacks_is_not_called_in_use() -> None:
    problem = port_check.bind_problem("192.0.2.1", 0)  # TEST-NET-1: on no interface here
    assert problem is not None and problem.startswith("cannot be listened on")
