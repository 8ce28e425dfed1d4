"""The launch page's routes against a real Redis, through Flask's test client (no browser)."""

from __future__ import annotations

import re
import time

import pytest
from launchbay.client import enqueue
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.store import QueueStore
from launchbay.ui.app import create_app
from ui_helpers import (
    JOB_SPEC,
    apply_queues,
    define_job,
    play_agent_start,
    record,
    register_agent,
    rq_queue_length,
    write_log,
)

from launchbay.errors import UserError

ORIGIN = "http://localhost"
TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def client(redis_conn):
    apply_queues(redis_conn)
    return create_app(redis_conn, keys=Keys()).test_client()


def post(client, url, data=None, **headers):
    return client.post(url, data=data or {}, headers={"Origin": ORIGIN, **headers})


def job_id_from(response) -> str:
    assert response.status_code == 303, response.get_data(as_text=True)
    return response.headers["Location"].rsplit("/", 1)[1]


def field_errors(html: str, key: str) -> str:
    """The text of the field block whose data-key is ``key`` (label, input, help, errors)."""
    match = re.search(rf'data-key="{re.escape(key)}">(.*?)</div>', html, re.S)
    assert match, f"no field {key} in the page"
    return match.group(1)


def test_the_jobs_page_lists_each_job_definition_with_what_a_launch_may_set(client, redis_conn):
    first = define_job(redis_conn)
    html = client.get("/").get_data(as_text=True)
    assert "trainer" in html
    assert "run config: 5 keys + schema" in html
    assert "config.yaml: 4 keys" in html
    assert f"/job/{first}" in html
    assert 'href="/launch/trainer"' in html


def test_a_valid_launch_enqueues_exactly_the_entered_overrides_and_goes_to_the_job_page(client, redis_conn):
    define_job(redis_conn)
    response = post(
        client,
        "/launch/trainer",
        {
            "queue": "gpu",
            "priority": "high",
            "image": "ghcr.io/acme/trainer:1.5",
            "gpus": "2",
            "memory": "32GiB",
            "run_config:seed": "",
            "run_config:trainer.batch_size": "64",
            "run_config:trainer.dataset": '"cifar100"',
            "file:config.yaml:epochs": "3",
        },
    )
    job = record(redis_conn, job_id_from(response))
    assert job["run_config"] == {"trainer": {"batch_size": 64, "dataset": "cifar100"}}
    assert job["file_overrides"] == {"config.yaml": {"epochs": 3}}
    assert (job["priority"], job["spec"]["image"], job["spec"]["command"]) == (
        "high",
        "ghcr.io/acme/trainer:1.5",
        ["python", "train.py"],
    )
    assert (job["request"]["gpus"], job["request"]["memory_mib"]) == (2, 32 * 1024)
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Job {job['id']} enqueued on &#39;gpu&#39;." in page
    assert "note: no agent is registered" in page


def test_a_refused_launch_shows_the_error_next_to_its_field_and_enqueues_nothing(client, redis_conn):
    define_job(redis_conn)
    before = rq_queue_length(redis_conn)
    response = post(client, "/launch/trainer", {"queue": "gpu", "image": "x:1", "run_config:trainer.batch_size": "300"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "300 is greater than the maximum of 256" in field_errors(html, "trainer.batch_size")
    assert 'value="300"' in field_errors(html, "trainer.batch_size")  # what was typed stays
    assert rq_queue_length(redis_conn) == before


def test_a_request_over_the_queues_limits_is_shown_next_to_the_resource_field(client, redis_conn):
    define_job(redis_conn)
    html = post(client, "/launch/trainer", {"queue": "gpu", "image": "x:1", "gpus": "16"}).get_data(as_text=True)
    gpus_field = re.search(r'name="gpus".*?</div>', html, re.S).group(0)
    assert "requested 16, queue &#39;gpu&#39; allows at most 8" in gpus_field


def test_a_problem_that_names_no_field_goes_on_top_of_the_form(client, redis_conn):
    define_job(redis_conn)
    html = post(client, "/launch/trainer", {"queue": "nope", "image": "x:1"}).get_data(as_text=True)
    assert "unknown queue &#39;nope&#39;; known queues: cpu, gpu" in html
    assert "Nothing was enqueued" in html


def test_an_unknown_job_definition_is_a_404_that_lists_the_known_ones(client, redis_conn):
    define_job(redis_conn)
    response = client.get("/launch/nope")
    assert response.status_code == 404
    assert "unknown job &#39;nope&#39;; known jobs: trainer" in response.get_data(as_text=True)


def test_paused_queues_are_marked_in_the_queue_select(client, redis_conn):
    define_job(redis_conn)
    QueueStore(redis_conn, Keys()).pause("cpu")
    html = client.get("/launch/trainer").get_data(as_text=True)
    assert "cpu (paused: jobs wait)" in html


def test_the_job_page_escapes_log_lines_and_config_values(client, redis_conn):
    define_job(redis_conn)
    job_id = job_id_from(post(client, "/launch/trainer", {"queue": "gpu", "image": "x:1"}))
    redis_conn.hset(Keys().job(job_id), "message", "<b>bold</b>")
    write_log(redis_conn, job_id, "<script>alert(1)</script>")
    html = client.get(f"/job/{job_id}").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "<script>alert" not in html


def test_the_log_endpoint_returns_the_entries_after_the_last_one_seen_and_the_end(client, redis_conn):
    define_job(redis_conn)
    job_id = job_id_from(post(client, "/launch/trainer", {"queue": "gpu", "image": "x:1"}))
    write_log(redis_conn, job_id, "one", "two")
    first = client.get(f"/job/{job_id}/log").get_json()
    assert (first["lines"], first["eof"], first["state"]) == (["one", "two"], None, "queued")
    write_log(redis_conn, job_id, "three", eof="finished")
    second = client.get(f"/job/{job_id}/log?after={first['last_id']}").get_json()
    assert (second["lines"], second["eof"]) == (["three"], "finished")
    assert client.get(f"/job/{job_id}/log?after=evil").status_code == 400


def test_the_metrics_endpoint_returns_steps_in_batches_the_cap_note_and_the_state(client, redis_conn):
    job_id = enqueue(JOB_SPEC, "gpu", conn=redis_conn, keys=Keys()).id
    stream = Keys().job_metrics(job_id)
    for n in range(1001):
        redis_conn.xadd(stream, {"m": f'{{"_step": {n}, "loss": {n / 10}}}'})
    redis_conn.xadd(stream, {"truncated": "the job logged more than 1001 steps"})

    first = client.get(f"/job/{job_id}/metrics").get_json()
    second = client.get(f"/job/{job_id}/metrics?after={first['last_id']}").get_json()

    assert len(first["steps"]) == 1000 and first["more"] is True and first["state"] == "queued"
    assert first["steps"][1] == {"_step": 1, "loss": 0.1}
    assert second["steps"] == [{"_step": 1000, "loss": 100.0}] and second["more"] is False
    assert second["truncated"] == "the job logged more than 1001 steps"
    assert client.get(f"/job/{job_id}/metrics?after=evil").status_code == 400
    assert client.get("/job/nope-nope/metrics").status_code == 404


def test_cancel_cancels_a_queued_job_and_a_second_cancel_says_it_already_ended(client, redis_conn):
    define_job(redis_conn)
    job_id = job_id_from(post(client, "/launch/trainer", {"queue": "gpu", "image": "x:1"}))
    response = post(client, f"/job/{job_id}/cancel")
    assert response.status_code == 303
    assert record(redis_conn, job_id)["state"] == "canceled"
    assert "Canceled." in client.get(f"/job/{job_id}").get_data(as_text=True)
    post(client, f"/job/{job_id}/cancel")
    assert "already ended (canceled); nothing to cancel" in client.get(f"/job/{job_id}").get_data(as_text=True)


def test_cancel_of_a_running_job_asks_its_agent(client, redis_conn):
    define_job(redis_conn)
    job_id = job_id_from(post(client, "/launch/trainer", {"queue": "gpu", "image": "x:1"}))
    play_agent_start(redis_conn, job_id)
    post(client, f"/job/{job_id}/cancel")
    assert record(redis_conn, job_id)["cancel_requested"] == "1"
    assert "cancel requested" in client.get(f"/job/{job_id}").get_data(as_text=True)


def test_the_queues_page_shows_depth_running_paused_and_each_agents_free_and_total(client, redis_conn):
    define_job(redis_conn)
    post(client, "/launch/trainer", {"queue": "gpu", "image": "x:1"})
    QueueStore(redis_conn, Keys()).pause("cpu")
    gpus = [{"id": str(i), "name": "NVIDIA A100-SXM4-80GB", "memory_total_mib": 81920} for i in range(4)]
    capacity = {"agent_id": "gpu-host-1", "host": "gpu-host-1", "queues": ["gpu"], "cpus": 14.0, "memory_mib": 61440}
    allocation = {"job_id": "j1", "queue": "gpu", "cpus": 4.0, "memory_mib": 16384, "gpus": ["0", "1"]}
    register_agent(redis_conn, {**capacity, "gpus": gpus}, {"j1": {**allocation, "claimed_at": time.time()}})
    html = client.get("/queues").get_data(as_text=True)
    gpu_row = re.search(r'data-queue="gpu">(.*?)</tr>', html, re.S).group(1)
    assert re.findall(r'class="num">(\d+)</td>', gpu_row) == ["1", "0"]  # depth, running
    assert "paused" in re.search(r'data-queue="cpu">(.*?)</tr>', html, re.S).group(1)
    agent_row = re.search(r'data-agent="gpu-host-1">(.*?)</tr>', html, re.S).group(1)
    assert "10 / 14" in agent_row
    assert "44GiB / 60GiB" in agent_row
    assert "2 / 4" in agent_row


# -- security -----------------------------------------------------------------------------


def test_a_post_from_another_origin_or_with_no_origin_is_refused(client, redis_conn):
    define_job(redis_conn)
    data = {"queue": "gpu", "image": "x:1"}
    assert client.post("/launch/trainer", data=data, headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.post("/launch/trainer", data=data).status_code == 403
    assert client.post("/launch/trainer", data=data, headers={"Referer": f"{ORIGIN}/launch/trainer"}).status_code == 303
    assert rq_queue_length(redis_conn) == 1


def test_a_host_header_that_is_not_loopback_is_refused_when_bound_to_loopback(client):
    assert client.get("/", headers={"Host": "rebound.example:8080"}).status_code == 400
    assert client.get("/", headers={"Host": "127.0.0.1:8080"}).status_code == 200


def test_binding_beyond_loopback_without_a_token_is_refused(redis_conn):
    with pytest.raises(UserError, match="without a token"):
        create_app(redis_conn, bind_host="0.0.0.0")


def test_with_a_token_pages_need_it_once_and_posts_need_it_every_time(redis_conn):
    apply_queues(redis_conn)
    define_job(redis_conn)
    client = create_app(redis_conn, keys=Keys(), token=TOKEN, bind_host="0.0.0.0").test_client()
    assert client.get("/").status_code == 401
    assert client.get("/?token=wrong").status_code == 401
    opened = client.get(f"/launch/trainer?token={TOKEN}")
    assert (opened.status_code, opened.headers["Location"]) == (303, "/launch/trainer")
    assert "HttpOnly" in opened.headers["Set-Cookie"] and "SameSite=Strict" in opened.headers["Set-Cookie"]
    form = client.get("/launch/trainer").get_data(as_text=True)
    assert f'name="token" value="{TOKEN}"' in form
    data = {"queue": "gpu", "image": "x:1"}
    assert post(client, "/launch/trainer", data).status_code == 403  # the cookie alone changes nothing
    assert post(client, "/launch/trainer", {**data, "token": "wrong"}).status_code == 403
    assert post(client, "/launch/trainer", {**data, "token": TOKEN}).status_code == 303
    assert post(client, "/launch/trainer", data, **{"X-Launchbay-Token": TOKEN}).status_code == 303


def test_pages_forbid_framing_and_scripts_from_elsewhere(client):
    headers = client.get("/").headers
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"


def test_a_job_that_has_not_run_yet_launches_with_a_json_object_of_overrides(client, redis_conn):
    first = enqueue_first_run_only(redis_conn)
    html = client.get("/launch/trainer").get_data(as_text=True)
    assert "This job has not recorded its inputs yet" in html
    assert f'value="{first["spec"]["image"]}"' in html
    response = post(
        client, "/launch/trainer", {"queue": "gpu", "image": "x:1", "run_config:": '{"trainer": {"epochs": 3}}'}
    )
    assert record(redis_conn, job_id_from(response))["run_config"] == {"trainer": {"epochs": 3}}


def test_launch_again_preselects_the_queue_the_job_ran_on(client, redis_conn):
    define_job(redis_conn)
    html = client.get("/launch/trainer?queue=cpu").get_data(as_text=True)
    assert '<option value="cpu" selected>' in html


def enqueue_first_run_only(redis_conn):
    """A job enqueued once and never run: a known name without recorded inputs."""
    return enqueue(JOB_SPEC, "gpu", conn=redis_conn, keys=Keys()).status()
