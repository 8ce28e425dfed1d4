"""The pages: job definitions, the launch form, one job (with its live log), sweeps, queues and agents."""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from launchbay.client import get_job, list_jobs
from launchbay.client import sweeps as sweeps_client
from launchbay.client.fit import describe_request
from launchbay.client.jobs import with_pending
from launchbay.metric_stream.reader import MetricsReader
from launchbay.queue_config.inputs_check import section_rows
from launchbay.queue_config.job import TERMINAL_STATES, JobRecord, State
from launchbay.queue_config.store import QueueStore
from launchbay.queue_config.units import format_duration
from launchbay.sweeps.store import SweepStore

from launchbay.errors import NotFoundError, UserError

from . import cluster as cluster_data
from . import identity, joblog, launch, overview, sweep_view
from .context import settings

pages = Blueprint("pages", __name__)

#: Job ids as enqueue makes them, with room for others; anything else is not a job (and not a key).
JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
STREAM_ID_RE = re.compile(r"^\d+-\d+\Z")
RECENT_JOBS_SHOWN = 20
#: The job page's times: (state whose ``<state>_at`` it shows, label).
TIMESTAMPS = (
    (State.QUEUED, "Queued"),
    (State.STARTING, "Claimed"),
    (State.RUNNING, "Running since"),
    (State.FINISHED, "Finished"),
    (State.FAILED, "Failed"),
    (State.CANCELED, "Canceled"),
)


@pages.get("/")
def jobs() -> Any:
    """Every job definition with a summary of its recorded inputs, and the newest jobs."""
    config = settings()
    store = QueueStore(config.conn, config.keys)
    definitions = []
    for entry in store.list_jobdefs():
        jobdef = store.get_jobdef(entry["name"]) if entry["recorded"] else None
        definitions.append({**entry, "inputs": inputs_summary(jobdef["inputs"]) if jobdef else []})
    recent = list_jobs(config.conn, config.keys, limit=RECENT_JOBS_SHOWN)
    return render_template("jobs.html", definitions=definitions, recent=recent)


def inputs_summary(inputs: Mapping[str, Any]) -> List[str]:
    """``["run config: 5 keys", "config.yaml: 3 keys"]``: how many keys a launch may set, per section."""
    sections = {"run config": inputs.get("run_config")}
    sections.update({path: record for path, record in (inputs.get("files") or {}).items()})
    summary = []
    for title, section in sections.items():
        if section is None:
            continue
        count = sum(1 for _key, _kind, verdict in section_rows(section) if verdict == "yes")
        summary.append(
            f"{title}: {count} key{'' if count == 1 else 's'}" + (" + schema" if section.get("schema") else "")
        )
    return summary


@pages.route("/launch/<name>", methods=["GET", "POST"])
def launch_form(name: str) -> Any:
    """The launch form of job ``name``; a POST enqueues it and goes to the new job's page."""
    config = settings()
    page = launch.load_page(config.conn, config.keys, name)
    if request.method == "GET" and request.args.get("queue"):
        page.values["queue"] = request.args["queue"]
    if request.method == "POST":
        handle = launch.submit(config.conn, config.keys, page, request.form, user=identity.submitter())
        if handle is not None:
            flash(f"Job {handle.id} enqueued on {request.form.get('queue')!r}.", "done")
            for note in handle.notes:
                flash(note, "note")
            return redirect(url_for(".job", job_id=handle.id), code=303)
    status = 422 if page.errors or page.general_errors else 200
    return render_template("launch.html", page=page, recorded=_recorded_rows(page.jobdef)), status


def _recorded_rows(jobdef: Optional[Mapping[str, Any]]) -> List[Dict[str, str]]:
    if not jobdef:
        return []
    inputs = jobdef["inputs"]
    sections = {"run config": inputs.get("run_config")}
    sections.update({f"file {path}": record for path, record in (inputs.get("files") or {}).items()})
    return [
        {"section": title, "key": key, "type": kind, "verdict": verdict}
        for title, section in sections.items()
        for key, kind, verdict in section_rows(section)
    ]


@pages.get("/job/<job_id>")
def job(job_id: str) -> Any:
    """A job's state, placement, overrides and effective config, with its log tail."""
    config = settings()
    record = with_pending(config.conn, config.keys, [_record(job_id)])[0]
    log = joblog.tail(config.conn, config.keys, job_id)
    nodes = get_job(job_id, conn=config.conn, keys=config.keys).nodes() if record.nodes > 1 else []
    return render_template("job.html", job=job_view(record, nodes), log=log)


def job_view(record: JobRecord, nodes: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
    """The record as the template reads it (every stored field), with what the page shows computed once;
    ``nodes``: a multi-node job's members as ``launchbay status --json`` lists them."""
    return {
        "members": nodes or [],
        **record.as_json(),
        "ended": record.state in TERMINAL_STATES if record.state is not None else True,
        "image": record.spec.get("image", "-"),
        "command": " ".join(record.spec.get("command") or []) or "(image default)",
        "request_text": describe_request(record.request),
        "max_runtime": format_duration(record.max_runtime_s),
        "gpu_ids": ", ".join(record.gpus) or "-",
        "times": [(label, record.times[state.value]) for state, label in TIMESTAMPS if record.times.get(state.value)],
    }


@pages.get("/job/<job_id>/log")
def job_log(job_id: str) -> Any:
    """JSON: the log entries after ``?after=ID``, the end marker, and the job's state now."""
    record = _record(job_id)
    last_id = _after_arg()
    config = settings()
    data = joblog.after(config.conn, config.keys, job_id, last_id)
    data.update(state=_state(record), reason=record.reason)
    return jsonify(data)


@pages.get("/job/<job_id>/metrics")
def job_metrics(job_id: str) -> Any:
    """JSON: the logged steps after ``?after=ID`` (a batch), whether more wait, the cap's note, the state."""
    record = _record(job_id)
    last_id = _after_arg()
    config = settings()
    reader = MetricsReader(config.conn, config.keys, job_id)
    steps, newest, more = reader.after(last_id)
    return jsonify(steps=steps, last_id=newest, more=more, truncated=reader.truncated or "", state=_state(record))


def _after_arg() -> str:
    """``?after=``: a stream entry id to read after ("" from the start); anything else is a 400."""
    last_id = request.args.get("after", "")
    if last_id and not STREAM_ID_RE.match(last_id):
        abort(400)
    return last_id


@pages.post("/job/<job_id>/cancel")
def cancel(job_id: str) -> Any:
    """Cancel the job as ``launchbay cancel`` does (with the rights of the token's user), then show its page again."""
    record = _record(job_id)
    config = settings()
    refused = identity.change_refusal(config.keys.job(job_id), job_id, record.submitter)
    if refused:
        flash(refused, "error")
        return redirect(url_for(".job", job_id=job_id), code=303)
    try:
        result = get_job(job_id, conn=config.conn, keys=config.keys).cancel()
    except UserError as exc:
        flash(str(exc), "error")
    else:
        message = "Canceled." if result == State.CANCELED else "Cancel requested: its agent is stopping it."
        flash(message, "done")
    return redirect(url_for(".job", job_id=job_id), code=303)


@pages.get("/sweeps")
def sweeps() -> Any:
    """Every sweep, newest first: state, method, queue, trials, best value."""
    config = settings()
    return render_template("sweeps.html", sweeps=sweep_view.sweep_rows(config.conn, config.keys))


@pages.get("/sweeps/<sweep_id>")
def sweep(sweep_id: str) -> Any:
    """One sweep: its state and best trial, a row per trial, charts of the metric; refreshes while open."""
    config = settings()
    view = sweep_view.sweep_page(config.conn, config.keys, _valid_id(sweep_id))
    return render_template("sweep.html", sweep=view)


@pages.post("/sweeps/<sweep_id>/<any(pause, resume, stop):action>")
def sweep_command(sweep_id: str, action: str) -> Any:
    """``launchbay sweep pause|resume|stop`` (with the rights of the token's user), then the sweep's page again."""
    config = settings()
    stored = SweepStore(config.conn, config.keys).get(_valid_id(sweep_id))
    refused = stored and identity.change_refusal(config.keys.sweep(sweep_id), sweep_id, stored.get("submitter"))
    if refused:
        flash(refused, "error")
        return redirect(url_for(".sweep", sweep_id=sweep_id), code=303)
    try:
        state = sweeps_client.command(config.conn, config.keys, _valid_id(sweep_id), action)
    except NotFoundError:
        raise  # the UI's 404 page
    except UserError as exc:
        flash(str(exc), "error")
    else:
        flash(SWEEP_DONE[state], "done")
    return redirect(url_for(".sweep", sweep_id=sweep_id), code=303)


#: What a sweep page says after a command.
SWEEP_DONE = {
    "paused": "Paused: no new trials; the running ones go on.",
    "running": "Resumed: trials are made again.",
    "stopping": "Stopping: no new trials; the sweep ends once its running trials end.",
}


@pages.get("/sweeps/<sweep_id>/data")
def sweep_data(sweep_id: str) -> Any:
    """JSON: the sweep as ``launchbay sweep show --json`` prints it; the sweep page's charts and poll."""
    config = settings()
    return jsonify(sweep_view.as_json(sweeps_client.show(config.conn, config.keys, _valid_id(sweep_id))))


@pages.get("/queues")
def queues() -> Any:
    """Queues (depth, running, paused) and live agents (free and total resources)."""
    config = settings()
    return render_template(
        "queues.html",
        queues=overview.queue_rows(config.conn, config.keys),
        agents=overview.agent_rows(config.conn, config.keys),
    )


@pages.get("/cluster")
def cluster() -> Any:
    """Every live agent with a cell per GPU, and the pending jobs with their reasons; refreshes itself."""
    config = settings()
    return render_template("cluster.html", view=cluster_data.cluster_view(config.conn, config.keys))


@pages.get("/cluster/live")
def cluster_live() -> Any:
    """The cluster page's changing part, which its script fetches every few seconds."""
    config = settings()
    return render_template("cluster_live.html", view=cluster_data.cluster_view(config.conn, config.keys))


@pages.get("/metrics")
def metrics() -> Any:
    """The queue-level Prometheus metrics, as ``launchbay exporter`` serves them (format by Accept)."""
    from prometheus_client.exposition import choose_encoder

    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return encode(settings().metrics_registry), 200, {"Content-Type": content_type}


def _valid_id(job_or_sweep_id: str) -> str:
    """The id, when it has the shape of one (sweep ids are made like job ids); else the 404 page."""
    if not JOB_ID_RE.match(job_or_sweep_id):
        abort(404)
    return job_or_sweep_id


def _record(job_id: str) -> JobRecord:
    config = settings()
    return get_job(_valid_id(job_id), conn=config.conn, keys=config.keys).record()


def _state(record: JobRecord) -> Optional[str]:
    """The job's state as the page's script reads it (None: not one of ours)."""
    return record.state.value if record.state is not None else None
