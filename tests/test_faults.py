"""Fault cases of the campaign (experiments.studies.faults) in the default suite, on the toy env with the fast
budgets: kill -9 once per kind of long command (at a seeded moment, or right after a checkpoint), a full disk once,
one damaged file of each kind.
The whole campaign, many kill moments per command, is tests/test_fault_campaign.py (slow).
"""

from __future__ import annotations

import pytest

from experiments.studies.faults import (
    COMMANDS,
    FAST,
    FILE_KINDS,
    Workspace,
    corrupt_case,
    disk_full_case,
    kill_case,
    kill_moments,
)

SEED = 38
"""Seeds the kill moments (issue 38)."""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Fast budgets; references, runs after a fault and readers of damaged files run in this process (no start-up
    cost); killed and disk-full runs in processes of their own."""
    return Workspace(tmp_path_factory.mktemp("faults"), FAST)


@pytest.mark.parametrize("name", ["collect", "train-vae", "evaluate"])
def test_a_run_killed_at_a_seeded_moment_recovers_with_nothing_lost(workspace, name):
    workspace.reference(name)
    (moment,) = kill_moments(workspace.working_s[name], 1, seed=SEED)
    record = kill_case(workspace, COMMANDS[name], 0, moment)
    assert record["recovered"], record
    assert (record["lost"], record["duplicated"]) == (0, 0)
    assert record["matches_reference"], record  # deterministic on resume


def test_an_agent_killed_after_a_checkpoint_resumes_with_nothing_lost(workspace):
    record = kill_case(workspace, COMMANDS["train-agent-ppo"], "checkpoint", 0.0, after="run/checkpoints/state.json")
    if not record["at_fault"].startswith("checkpoint at step"):  # polled every 5 ms: a busy machine may miss it
        pytest.skip(f"the kill missed the run between its first checkpoint and its end: {record['at_fault']}")
    assert record["check"]["resumed_from_step"] == int(record["at_fault"].split()[-1])
    assert record["recovered"] and record["lost"] == 0, record["check"]


def test_a_kill_between_the_first_checkpoint_and_its_resume_state_recovers(workspace):
    record = kill_case(workspace, COMMANDS["train-vae"], "window", 0.0, after="run/last.safetensors")
    if not record["at_fault"].endswith("last.safetensors written"):  # polled every 5 ms: a busy machine may miss it
        pytest.skip(f"the kill missed the window between the two files: {record['at_fault']}")
    assert record["recovered"], record["reruns"]


def test_a_full_disk_ends_in_one_line_and_a_rerun_completes_with_nothing_lost(workspace):
    record = disk_full_case(workspace, COMMANDS["train-vae"])
    assert record["one_line_error"] and record["damaged_files"] == [], record["full_disk_run"]
    assert record["recovered"] and record["lost"] == 0, record
    assert record["matches_reference"]


ONE_DAMAGE_PER_KIND = {
    "data shard": "bit-flipped",
    "VAE checkpoint": "bit-flipped",
    "memory checkpoint": "incomplete",
    "policy files": "truncated",
    "run config.json": "bit-flipped",
    "evaluation progress": "bit-flipped",
    "tune study": "truncated",
}
"""The damage done to each file kind here (the campaign does every damage to every kind)."""


@pytest.mark.parametrize(("kind", "damage"), ONE_DAMAGE_PER_KIND.items())
def test_a_damaged_file_is_refused_in_one_line_naming_it(workspace, kind, damage):
    record = corrupt_case(workspace, FILE_KINDS[kind], damage)
    assert record["recovered"], record["run"]


def test_every_file_kind_is_damaged_here():
    assert set(ONE_DAMAGE_PER_KIND) == set(FILE_KINDS)
