"""W&B offline runs outlive the job folder for ``wandb sync``, without what a job could plant in them."""

from __future__ import annotations

import os
import time

from launchbay.agent.wandb_offline import KEEP_S, KEPT_FOLDER, keep_offline_runs

RUN = "offline-run-20260101_120000-abc123"


def make_run(output_dir, name=RUN):
    run = output_dir / "wandb" / name
    (run / "files").mkdir(parents=True)
    (run / f"run-{name.rsplit('-', 1)[1]}.wandb").write_bytes(b":W&B")
    (run / "files" / "config.yaml").write_text("x: 1\n")
    return run


def test_offline_runs_are_moved_out_of_the_job_folder_and_online_ones_are_not(tmp_path):
    state, output = tmp_path / "state", tmp_path / "state" / "jobs" / "j1" / "output"
    make_run(output)
    make_run(output, "run-20260101_120000-online1")

    (kept,) = keep_offline_runs(output, state, "j1")

    assert kept == state / KEPT_FOLDER / "j1" / RUN
    assert (kept / "run-abc123.wandb").read_bytes() == b":W&B"
    assert (kept / "files" / "config.yaml").read_text() == "x: 1\n"
    assert not (output / "wandb" / RUN).exists()
    assert (state / KEPT_FOLDER).stat().st_mode & 0o777 == 0o700


def test_symlinks_fifos_and_setuid_bits_a_job_planted_do_not_survive(tmp_path):
    state, output = tmp_path / "state", tmp_path / "output"
    run = make_run(output)
    secret = tmp_path / "host-secret"
    secret.write_text("host only")
    (run / "files" / "stolen.txt").symlink_to(secret)  # wandb sync would upload the host file
    os.mkfifo(run / "files" / "pipe")
    (run / "files" / "config.yaml").chmod(0o4755)

    (kept,) = keep_offline_runs(output, state, "j1")

    assert sorted(os.listdir(kept / "files")) == ["config.yaml"]
    assert (kept / "files" / "config.yaml").stat().st_mode & 0o7777 == 0o755


def test_a_wandb_folder_that_is_a_symlink_is_left_alone(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    make_run(elsewhere)
    output = tmp_path / "output"
    output.mkdir()
    (output / "wandb").symlink_to(elsewhere / "wandb")

    assert keep_offline_runs(output, tmp_path / "state", "j1") == []
    assert (elsewhere / "wandb" / RUN).is_dir()


def test_runs_kept_longer_than_a_week_go_when_new_ones_are_kept(tmp_path):
    state = tmp_path / "state"
    keep_offline_runs(make_run(tmp_path / "old").parent.parent, state, "old-job")
    old = state / KEPT_FOLDER / "old-job"
    week_ago = time.time() - KEEP_S - 60
    os.utime(old, (week_ago, week_ago))

    keep_offline_runs(make_run(tmp_path / "new").parent.parent, state, "new-job")

    assert sorted(os.listdir(state / KEPT_FOLDER)) == ["new-job"]


def test_a_run_the_agent_cannot_clean_is_not_kept(tmp_path, monkeypatch):
    # E.g. a non-root agent and a symlink in a folder the container's root owns.
    from launchbay.agent import wandb_offline

    def refuse(_top):
        raise PermissionError("Operation not permitted")

    monkeypatch.setattr(wandb_offline, "_only_plain_files", refuse)
    state = tmp_path / "state"

    assert keep_offline_runs(make_run(tmp_path / "output").parent.parent, state, "j1") == []
    assert os.listdir(state / KEPT_FOLDER / "j1") == []
