"""The sweep pages through Flask's test client, against a real Redis and the agents' real sweep driver:
the list, one sweep's header, best trial and trial rows, the JSON the page's charts read, and 404s."""

from __future__ import annotations

import html
import re

import pytest
from launchbay.client import sweeps
from launchbay.queue_config.keys import Keys
from launchbay.ui.app import create_app
from launchbay.ui.sweep_view import param_text, trial_value_text
from sweep_ui_helpers import finished_and_pruned, grid_sweep

pytestmark = pytest.mark.integration


@pytest.fixture
def client(redis_conn):
    return create_app(redis_conn, keys=Keys()).test_client()


def rows(page: str) -> dict:
    """``{trial number: [cell texts]}`` of the trials table, tags stripped."""
    body = page.split('<table class="grid" id="trials">', 1)[1].split("</tbody>", 1)[0]
    found = {}
    for number, row in re.findall(r'<tr data-number="(\d+)"[^>]*>(.*?)</tr>', body, re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        found[int(number)] = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in cells]
    return found


def test_the_sweep_page_shows_the_best_trial_and_a_row_per_trial_linked_to_its_job(client, redis_conn, tmp_path):
    sweep_id, shown = finished_and_pruned(redis_conn, tmp_path)
    response = client.get(f"/sweeps/{sweep_id}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)

    best = shown["best"]
    assert best["value"] == 1.2 and best["params"]["trainer.learning_rate"] == 0.01
    best_card = page.split('id="sweep-best"', 1)[1].split("</section>", 1)[0]
    assert '<strong id="best-value">1.2</strong>' in best_card
    assert f'href="/job/{best["job_id"]}"' in best_card
    assert 'trainer.learning_rate</dt><dd class="mono">0.01</dd>' in best_card
    assert 'config.yaml:optimizer.momentum</dt><dd class="mono">0.7</dd>' in best_card
    assert "12 ended / 12 made of 12" in page
    assert "(minimize)" in page and "early termination: median" in page

    table = rows(page)
    assert sorted(table) == list(range(12))
    for trial in shown["trials"]:
        number, job_id = trial["number"], trial["job_id"]
        assert f'<a class="mono" href="/job/{job_id}">{job_id}</a>' in page
        cells = table[number]
        assert cells[1] == job_id
        assert cells[2] == trial["label"]
        assert cells[4:] == [param_text(trial["params"][name]) for name in shown["parameters"]]
    labels = [cells[2] for cells in table.values()]
    assert labels.count("finished") + labels.count("canceled (pruned)") == 12
    assert labels.count("canceled (pruned)") >= 1
    pruned = next(cells for cells in table.values() if cells[2] == "canceled (pruned)")
    assert re.fullmatch(r"2\.\d+ @ step 2", pruned[3]), pruned  # a pruned trial shows its last value
    assert 'class="current">Sweeps</a>' in page


def test_the_sweeps_page_lists_each_sweep_with_its_trials_and_best_value(client, redis_conn, tmp_path):
    empty = client.get("/sweeps").get_data(as_text=True)
    assert "No sweeps yet" in empty
    sweep_id, _ = finished_and_pruned(redis_conn, tmp_path)
    page = client.get("/sweeps").get_data(as_text=True)
    row = page.split(f'<tr data-sweep="{sweep_id}">', 1)[1].split("</tr>", 1)[0]
    assert f'href="/sweeps/{sweep_id}"' in row
    assert "lr-momentum-dataset" in row and "grid" in row and "sweeps" in row
    assert "12 ended / 12 made of 12" in row
    assert "1.2 <span" in row


def test_an_unknown_or_malformed_sweep_id_is_the_ui_s_404_page(client, redis_conn):
    for url in ("/sweeps/0123456789abcdef", "/sweeps/0123456789abcdef/data", "/sweeps/not.an.id"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert "Not found" in response.get_data(as_text=True)
    assert "unknown sweep" in client.get("/sweeps/0123456789abcdef").get_data(as_text=True)


def test_the_json_endpoint_is_what_sweep_show_returns(client, redis_conn, tmp_path):
    sweep_id, _ = finished_and_pruned(redis_conn, tmp_path)
    data = client.get(f"/sweeps/{sweep_id}/data").get_json()
    assert data == sweeps.show(redis_conn, Keys(), sweep_id)
    assert set(data) >= {"id", "name", "state", "method", "metric", "parameters", "best", "trials", "trial_cap"}
    assert data["metric"] == {"name": "loss", "goal": "minimize"}
    trial = data["trials"][0]
    assert set(trial) == {"job_id", "number", "params", "state", "reason", "ended", "label", "value", "last"}
    assert set(trial["params"]) == set(data["parameters"])


def test_a_new_sweep_without_trials_says_so_and_its_text_is_escaped(client, redis_conn, tmp_path):
    sweep_id = grid_sweep(redis_conn, tmp_path, name="<script>alert(1)</script>")
    page = client.get(f"/sweeps/{sweep_id}").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "No trials made yet: an agent that serves sweeps makes them." in page
    assert "No trial has finished with a loss yet." in page
    assert 'data-open="true"' in page


def test_a_trial_s_value_text_is_its_value_else_its_last_step():
    assert trial_value_text({"value": 1.23456789, "last": None}) == "1.23457"
    assert trial_value_text({"value": None, "last": {"step": 3, "value": 2.5}}) == "2.5 @ step 3"
    assert trial_value_text({"value": None, "last": None}) == "-"
    assert param_text([1, 2]) == "[1, 2]" and param_text("adam") == "adam" and param_text(1e-4) == "0.0001"


def test_a_trial_s_job_page_links_back_to_its_sweep(client, redis_conn, tmp_path):
    sweep_id, shown = finished_and_pruned(redis_conn, tmp_path)
    trial = shown["trials"][3]
    page = client.get(f"/job/{trial['job_id']}").get_data(as_text=True)
    sweep_row = page.split('id="job-sweep"', 1)[1].split("</dd>", 1)[0]
    assert f'href="/sweeps/{sweep_id}"' in sweep_row and f"(trial {trial['number']})" in sweep_row


def test_pause_resume_and_stop_from_the_sweep_page(client, redis_conn, tmp_path):
    sweep_id = grid_sweep(redis_conn, tmp_path)
    origin = {"Origin": "http://localhost"}
    page = client.get(f"/sweeps/{sweep_id}").get_data(as_text=True)
    assert 'id="sweep-pause"' in page and 'id="sweep-stop"' in page and 'id="sweep-resume"' not in page

    response = client.post(f"/sweeps/{sweep_id}/pause", headers=origin)
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/sweeps/{sweep_id}")
    page = client.get(f"/sweeps/{sweep_id}").get_data(as_text=True)
    assert "Paused: no new trials; the running ones go on." in page
    assert sweeps.show(redis_conn, Keys(), sweep_id)["state"] == "paused" and 'id="sweep-resume"' in page

    client.post(f"/sweeps/{sweep_id}/resume", headers=origin)
    assert sweeps.show(redis_conn, Keys(), sweep_id)["state"] == "running"
    client.post(f"/sweeps/{sweep_id}/stop", headers=origin)
    page = client.get(f"/sweeps/{sweep_id}").get_data(as_text=True)
    assert sweeps.show(redis_conn, Keys(), sweep_id)["state"] == "stopping"
    assert 'id="sweep-pause"' not in page and 'id="sweep-stop"' not in page

    client.post(f"/sweeps/{sweep_id}/resume", headers=origin)  # a stopping sweep cannot be resumed: said, not a 500
    assert f"sweep {sweep_id} is stopping; it cannot be made running" in client.get(f"/sweeps/{sweep_id}").get_data(
        as_text=True
    )
    assert client.post("/sweeps/nope/pause", headers=origin).status_code == 404
    assert client.post(f"/sweeps/{sweep_id}/delete", headers=origin).status_code in (404, 405)
