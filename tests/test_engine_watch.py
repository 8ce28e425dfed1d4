"""The test set-up's check for a wedged Docker engine (tests/conftest.py ``EngineWatch``).

A wedged engine accepts connections and never answers. Here a unix socket that does exactly that
stands in for it, so the check is shown to name the engine and stop waiting, instead of hanging.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from conftest import EngineWatch


@pytest.fixture
def silent_engine(tmp_path, monkeypatch):
    path = tmp_path / "docker.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    held = []
    stop = threading.Event()

    def accept_and_hold():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])  # read nothing, answer nothing
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_hold, daemon=True)
    thread.start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    monkeypatch.delenv("LAUNCHBAY_TEST_PRIVATE_DOCKERD", raising=False)
    yield f"unix://{path}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_wedged_engine_is_named_and_later_tests_fail_at_once(silent_engine):
    watch = EngineWatch()
    watch.PROBE_TIMEOUT_S = 1
    with pytest.raises(pytest.fail.Exception) as first:
        watch.check()
    assert str(first.value) == (f"the Docker engine at {silent_engine} did not list containers within 1 s: wedged")
    started = time.monotonic()
    with pytest.raises(pytest.fail.Exception) as second:
        watch.check()
    assert str(second.value) == str(first.value)
    assert time.monotonic() - started < 0.5, "a known wedge is reported without probing again"
    assert watch.restarts == 0, "an engine the set-up did not start is never restarted"
