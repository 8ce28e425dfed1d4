"""``launchbay ui`` as a user starts it: the bind rule, the token over real HTTP, Redis errors."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

import pytest
from conftest import run_cli
from ui_helpers import UiServer, apply_queues, define_job, rq_queue_length

TOKEN = "a-long-random-secret-for-the-test"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def http(url: str, *, data=None, headers=None) -> int:
    """The status code of one request (redirects not followed)."""
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers=headers or {})
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def token_server(redis_url):
    server = UiServer(redis_url, host="0.0.0.0", token=TOKEN)
    yield server
    server.stop()


def test_binding_to_all_interfaces_without_a_token_refuses_to_start(redis_url):
    result = run_cli("ui", "--host", "0.0.0.0", "--port", "0", env={"LAUNCHBAY_REDIS_URL": redis_url})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: refusing to serve on 0.0.0.0")
    assert "LAUNCHBAY_UI_TOKEN" in result.stderr


def test_with_a_token_a_post_without_it_is_403_and_with_it_launches(token_server, redis_conn):
    apply_queues(redis_conn)
    define_job(redis_conn)
    origin = token_server.url.rstrip("/")
    form = {"queue": "gpu", "image": "x:1", "run_config:seed": "3"}
    assert http(token_server.url) == 401
    assert http(f"{origin}/launch/trainer", data=form, headers={"Origin": origin}) == 403
    assert rq_queue_length(redis_conn) == 0
    assert http(f"{origin}/launch/trainer", data={**form, "token": TOKEN}, headers={"Origin": origin}) == 303
    assert rq_queue_length(redis_conn) == 1


def test_an_unreachable_redis_is_one_line_and_exit_code_3():
    result = run_cli("ui", "--port", "0", "--redis-url", "redis://127.0.0.1:1/0", timeout=30)
    assert result.returncode == 3
    assert result.stderr.startswith("error: cannot reach Redis at redis://127.0.0.1:1/0")
