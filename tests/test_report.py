"""experiments.pipeline.report on a hand-made pipeline directory: tables, CIs, PNGs, milestones, commands."""

from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from experiments.pipeline import markdown, report
from experiments.pipeline.markdown import confidence_interval
from experiments.pipeline.report import milestone_statement, write_report
from worldmodel.vae.diagnostics import write_png


def _agent(out, mode, seed, mean_return, *, frames_per_step=1, random=None, steps=1000):
    run_dir = out / "agents" / f"{mode}__seed{seed}"
    run_dir.mkdir(parents=True)
    summary = {"agent_steps": steps, "env_frames": steps * frames_per_step, "elapsed_s": 50.0}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    evaluation = {"episodes": 4, "seed": 7, "mean_return": mean_return, "std_return": 2.0}
    if random is not None:
        evaluation["random"] = {"mean_return": random, "std_return": 1.0}
    (run_dir / "evaluation.json").write_text(json.dumps(evaluation))
    np.savez(
        run_dir / "evaluations.npz",
        timesteps=np.array([500, 1000]),
        results=np.array([[0.0, 1.0], [mean_return, mean_return]]),
        ep_lengths=np.ones((2, 2), int),
    )


@pytest.fixture
def pipeline_dir(tmp_path):
    out = tmp_path / "run"
    (out / "vae").mkdir(parents=True)
    pipeline = {
        "config": {"env_id": "CarRacing-v3", "out": "run", "eval_episodes": 4, "eval_seed": 7},  # flat, as recorded
        "commands": ["python -m experiments.carracing --out run"],
        "machines": ["Test CPU, 2 cores"],
        "stage_commands": [
            ["collect", "worldmodel collect CarRacing-v3 --out run/data"],
            ["train-vae", "worldmodel train-vae run/data"],
        ],
    }
    (out / "pipeline.json").write_text(json.dumps(pipeline))
    stages = {
        "train-vae": {"status": "done", "wall_s": 12.5, "peak_rss_mib": 900.0},
        "collect": {"status": "done", "wall_s": 3.0, "env_frames": 5000, "frames_per_s": 1666.7, "peak_rss_mib": 300.0},
    }
    (out / "stages.json").write_text(json.dumps(stages))
    vae_summary = {"val_psnr_db": 30.0, "val_mse_per_pixel": 0.001, "active_dims": 20, "latent_dim": 32,
                   "steps": 100, "wall_s": 60.0, "images_per_s": 500.0}  # fmt: skip
    (out / "vae" / "summary.json").write_text(json.dumps(vae_summary))
    for name in ("recon", "samples"):
        write_png(out / "vae" / f"{name}.png", np.zeros((8, 8, 3), np.uint8))
    _agent(out, "ppo", 0, 500.0, random=-60.0)
    _agent(out, "ppo", 1, 520.0)
    _agent(out, "ppo", 2, 540.0)
    _agent(out, "pixels-ppo", 0, 300.0, frames_per_step=2)
    return out


# By hand: n values, their mean, sample variance s^2, standard error se = s / sqrt(n), t = t_{0.975, n-1} from a
# t table, half-width t * se. For 0..n-1: mean (n-1)/2, s^2 = n(n+1)/12, se^2 = (n+1)/12.
#   [0, 2]        n=2    mean 1     s^2 = 2                       se = 1        t_1 = 12.706   12.706
#   [1, 2, 4]     n=3    mean 7/3   s^2 = (16+1+25)/9/2 = 7/3     se = 0.88192  t_2 = 4.303    3.7949
#   [1, ..., 5]   n=5    mean 3     s^2 = 10/4                    se = 0.70711  t_4 = 2.776    1.9629
#   0..20         n=21   mean 10    s^2 = 38.5                    se = 1.35401  t_20 = 2.086   2.8245
#   0..40         n=41   mean 20    s^2 = 143.5                   se = 1.87083  t_40 = 2.021   3.7809
#   0..100        n=101  mean 50    s^2 = 858.5                   se = 2.91548  t_100 = 1.984  5.7843
@pytest.mark.parametrize(
    ("values", "half_width", "text"),
    [
        ([0.0, 2.0], 12.706, "1.00 ± 12.71"),
        ([1.0, 2.0, 4.0], 3.7949, "2.33 ± 3.79"),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 1.9629, "3.00 ± 1.96"),
        (list(range(21)), 2.8245, "10.00 ± 2.82"),
        (list(range(41)), 3.7809, "20.00 ± 3.78"),
        (list(range(101)), 5.7843, "50.00 ± 5.78"),
    ],
    ids=["dof1", "dof2", "dof4", "dof20", "dof40", "dof100"],
)
def test_confidence_interval_is_student_t(values, half_width, text):
    assert confidence_interval(values) == pytest.approx(half_width, rel=3e-4)  # t to 3 decimals: within 2.5e-4
    assert markdown.mean_ci(values, 2) == text


def test_confidence_interval_needs_two_values():
    with pytest.raises(ValueError, match="at least 2"):
        confidence_interval([1.0])


def test_report_has_tables_pngs_and_commands(pipeline_dir, tmp_path):
    reports = tmp_path / "reports"
    path = write_report(pipeline_dir, name="car", report_dir=reports)
    text = path.read_text()
    assert path == reports / "car" / "README.md"
    for png in ("learning_curves.png", "recon.png", "samples.png"):
        assert (reports / "car" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png})" in text  # beside the report, in its folder
    assert "| ppo on latents | 1 | 520.0 ± 2.0 | 4 | 1,000 | 1,000 |" in text
    assert "| ppo on pixels | 0 | 300.0 ± 2.0 | 4 | 2,000 | 1,000 |" in text
    ci = confidence_interval([500.0, 520.0, 540.0])
    assert f"**520.0** (95% CI ± {ci:.1f})" in text
    assert "(one seed: no CI)" in text  # the pixel baseline has one seed
    assert "| uniform random policy | – | -60.0 ± 1.0 |" in text
    for anchor in ("632 ± 251", "788 ± 141", "906 ± 21", "~429"):
        assert anchor in text
    assert text.index("| collect |") < text.index("| train-vae |")  # pipeline order, not file order
    assert "| collect | 3.0 s | 5,000 |" in text and "900.0" in text
    assert "Test CPU, 2 cores" in text and "python -m experiments.carracing --out run" in text
    assert "worldmodel train-vae run/data" in text
    assert "Reached: beats rl-zoo's pixel PPO at 8M frames (429)." in text
    assert "Next run: to pass 632" in text


def test_seeds_are_pooled_only_at_equal_budgets(pipeline_dir, tmp_path):
    _agent(pipeline_dir, "pixels-ppo", 1, 100.0, frames_per_step=2, steps=500)
    # stopped at an episode end 2 frames short: still the 1,000-frame budget
    _agent(pipeline_dir, "pixels-ppo", 2, 140.0, frames_per_step=2, steps=499)
    text = write_report(pipeline_dir, name="car", report_dir=tmp_path).read_text()
    assert "| **ppo on pixels (2,000 frames), 1 seed(s)** | all | **300.0** (one seed: no CI) |" in text
    ci = confidence_interval([100.0, 140.0])
    assert f"| **ppo on pixels (1,000 frames), 2 seed(s)** | all | **120.0** (95% CI ± {ci:.1f}) |" in text
    assert "| **ppo on latents, 3 seed(s)** |" in text  # one budget: no suffix
    # the latent agents (1,000 frames) are judged against the pixel runs of the same budget
    assert "the pixel baseline (120.0, at the same budget) with non-overlapping 95% CIs" in text


def _pipeline_like(source, out, **config_changes):
    """A pipeline output with ``source``'s pipeline.json (config changed) and no runs yet."""
    (out / "agents").mkdir(parents=True)
    pipeline = json.loads((source / "pipeline.json").read_text())
    pipeline["config"] |= config_changes
    pipeline["commands"], pipeline["machines"] = (
        ["python -m experiments.carracing --out pixels"],
        ["Other CPU, 2 cores"],
    )
    (out / "pipeline.json").write_text(json.dumps(pipeline))
    return out


def test_compared_pipelines_join_the_tables_on_the_same_tracks_only(pipeline_dir, tmp_path):
    shutil.rmtree(pipeline_dir / "agents" / "pixels-ppo__seed0")  # this pipeline: latent runs only
    pixels = _pipeline_like(pipeline_dir, tmp_path / "pixels")
    for seed, score in enumerate((300.0, 310.0, 320.0)):
        _agent(pixels, "pixels-ppo", seed, score)
    text = write_report(pipeline_dir, name="car", report_dir=tmp_path / "r", compare=[pixels]).read_text()
    assert "| ppo on pixels | 2 | 320.0 ± 2.0 | 4 | 1,000 | 1,000 |" in text
    assert "| **ppo on pixels, 3 seed(s)** | all | **310.0** (95% CI ±" in text
    assert "the pixel baseline (310.0, at the same budget) with non-overlapping 95% CIs" in text
    assert "Other CPU, 2 cores" in text and "python -m experiments.carracing --out pixels" in text
    other_tracks = _pipeline_like(pipeline_dir, tmp_path / "other", eval_seed=8)
    with pytest.raises(ValueError, match=r"other tracks \(evaluate\.seed 8 against 7\)"):
        write_report(pipeline_dir, name="car", report_dir=tmp_path / "r", compare=[other_tracks])
    same_mode = _pipeline_like(pipeline_dir, tmp_path / "same")
    _agent(same_mode, "ppo", 3, 100.0)
    with pytest.raises(ValueError, match="ppo runs are in both this pipeline and"):
        write_report(pipeline_dir, name="car", report_dir=tmp_path / "r", compare=[same_mode])


def test_report_rewrites_atomically_and_rejects_non_pipeline_dirs(pipeline_dir, tmp_path):
    first = write_report(pipeline_dir, name="car", report_dir=tmp_path).read_text()
    assert (
        write_report(pipeline_dir, name="car", report_dir=tmp_path).read_text().split("\n", 4)[4]
        == first.split("\n", 4)[4]  # after the marker, the title, a blank line and the time it was written
    )
    with pytest.raises(FileNotFoundError, match="not a pipeline output directory"):
        write_report(tmp_path / "nothing", name="x", report_dir=tmp_path)


def test_milestones_need_the_frame_budget_and_name_the_next_goal():
    modes = {"ppo on latents": {"mean": 700.0, "means": [690.0, 710.0], "env_frames": [2_000_000] * 2, "ci95": 5.0}}
    text = milestone_statement("CarRacing-v3", modes)
    assert "more than the 1,000,000 the goal allows" in text and "(632)" in text and "Next run: to pass 788" in text
    assert "defined for CarRacing-v3" in milestone_statement("worldmodel/DotTarget-v0", modes)
    rounded = {"ppo on latents": {**modes["ppo on latents"], "env_frames": [1_003_519, 1_003_507]}}  # a rollout over
    assert "Reached: beats rl-zoo" in milestone_statement("CarRacing-v3", rounded)
    assert "the goal allows" not in milestone_statement("CarRacing-v3", rounded)
    assert "No latent agent" in milestone_statement("CarRacing-v3", {})
    behind = {
        **rounded,
        "ppo on pixels": {"mean": 780.0, "means": [780.0] * 3, "env_frames": [1_007_600] * 3, "ci95": 60.0},
    }
    text = milestone_statement("CarRacing-v3", behind)
    assert "does not beat the pixel baseline (780.0, at the same budget)" in text
    assert "Next run: the pixel recipe scores higher at this budget" in text and "train longer (this" not in text
    four_million = {"ppo on latents": {**modes["ppo on latents"], "mean": 505.0, "env_frames": [4_001_774, 4_001_737]}}
    text = milestone_statement("CarRacing-v3", four_million)
    assert "the longest budget the goals allow, did not pass 632" in text and "train longer (this" not in text


def test_learning_curves_use_the_frames_and_wall_clock_recorded_at_each_evaluation(pipeline_dir):
    from experiments.pipeline.report import _curve, find_runs

    run = next(r for r in find_runs(pipeline_dir) if r.mode == "ppo" and r.seed == 0)
    summary = json.loads((run.run_dir / "summary.json").read_text())
    # a run resumed on a slower machine: the first half took 5 s, the second 45 s
    summary["curve"] = [{"step": 500, "env_frames": 500, "elapsed_s": 5.0}]
    (run.run_dir / "summary.json").write_text(json.dumps(summary))
    run = next(r for r in find_runs(pipeline_dir) if r.mode == "ppo" and r.seed == 0)
    frames, wall, _ = _curve(run)
    assert list(wall) == [5.0, 50.0]  # recorded; the second is interpolated from the totals (no record)
    assert list(frames) == [500.0, 1000.0]


def test_throughput_is_judged_against_the_pixel_recipe_and_the_raw_env(pipeline_dir, tmp_path):
    # latents: 1000 frames in 50 s = 20/s; pixels: 2000 frames in 50 s = 40/s; collect: 1666.7/s
    text = write_report(pipeline_dir, name="t", report_dir=tmp_path / "reports").read_text()
    section = text.split("## Throughput")[1].split("## Stages")[0]
    assert "| ppo on latents | 20.0 | 0.50x | 1% |" in section
    assert "| ppo on pixels | 40.0 | 1.00x | 2% |" in section
    assert "0.50x the pixel recipe's env frames/s (goal >= 2x: not met)" in section
    assert "1% of the raw env speed (goal >= 80%: not met)" in section
    # collect 3 s + VAE 12.5 s added to 50 s of training: 1000 / 65.5
    assert "whole pipeline (collection and VAE training added to the fastest latent mode): 15.3" in section
    assert "Caution" not in section


def test_throughput_warns_when_the_runs_span_machines(pipeline_dir, tmp_path):
    pipeline = json.loads((pipeline_dir / "pipeline.json").read_text())
    pipeline["machines"] = [
        "CPU A, 2 cores (load avg 0.1 at start)",
        "CPU A, 2 cores (3 other runnable processes at start)",
    ]
    (pipeline_dir / "pipeline.json").write_text(json.dumps(pipeline))
    assert "Caution" not in write_report(pipeline_dir, name="t", report_dir=tmp_path / "r").read_text()
    pipeline["machines"].append("GPU box, 16 cores (load avg 5.0 at start)")
    (pipeline_dir / "pipeline.json").write_text(json.dumps(pipeline))
    text = write_report(pipeline_dir, name="t", report_dir=tmp_path / "r").read_text()
    assert "these runs span 2 machines" in text
    machines = text.split("## Machine\n\n")[1].split("\n\n")[0]
    assert machines == (
        "- CPU A, 2 cores: 2 commands; at start: load avg 0.1; 3 other runnable processes\n"
        "- GPU box, 16 cores: 1 command; at start: load avg 5.0"
    )


def test_an_evaluation_older_than_the_model_is_not_reported_as_its_return(pipeline_dir, tmp_path):
    run_dir = pipeline_dir / "agents" / "ppo__seed2"  # evaluated at 540.0, then trained further
    (run_dir / "model.zip").write_bytes(b"zip")
    evaluated = (run_dir / "evaluation.json").stat().st_mtime
    os.utime(run_dir / "model.zip", (evaluated + 60, evaluated + 60))
    text = write_report(pipeline_dir, name="t", report_dir=tmp_path / "reports").read_text()
    assert "| ppo on latents | 2 | not evaluated at this budget |" in text
    assert "**ppo on latents, 2 seed(s)** | all | **510.0**" in text  # seeds 0 and 1 only


def test_records_write_the_report_again_and_compare_after_the_runs_are_gone(pipeline_dir, tmp_path):
    stale = pipeline_dir / "agents" / "ppo__seed2"  # evaluated, then trained further: its evaluation is not kept
    (stale / "model.zip").write_bytes(b"weights")
    os.utime(stale / "model.zip", ((stale / "evaluation.json").stat().st_mtime + 60,) * 2)
    reports = tmp_path / "reports"
    first = write_report(pipeline_dir, name="car", report_dir=reports).read_text()
    records = reports / "car" / report.RECORDS_DIR
    assert sorted(path.name for path in (records / "agents").iterdir()) == [
        "pixels-ppo__seed0", "ppo__seed0", "ppo__seed1", "ppo__seed2",
    ]  # fmt: skip
    assert sorted(path.name for path in (records / "agents" / "ppo__seed2").iterdir()) == [
        "evaluations.npz", "summary.json",
    ]  # fmt: skip
    assert (records / "pipeline.json").is_file() and (records / "vae" / "summary.json").is_file()
    assert "--compare " in first and "car/records" in first
    shutil.rmtree(pipeline_dir)
    again = write_report(records, name="car", report_dir=reports).read_text()
    between = lambda text, start, end: text.split(start, 1)[1].split(end, 1)[0]  # noqa: E731
    for start, end in (("## Returns", "## Stages"), ("## Stages", "## Learning curves"), ("## VAE", "## Commands")):
        assert between(again, start, end) == between(first, start, end)
    assert "| ppo on latents | 2 | not evaluated at this budget |" in again
    latents = tmp_path / "latents"  # another pipeline's latent runs, shown beside the records' pixel run
    shutil.copytree(records, latents)
    shutil.rmtree(latents / "agents" / "pixels-ppo__seed0")
    shutil.rmtree(records / "agents" / "ppo__seed0"), shutil.rmtree(records / "agents" / "ppo__seed1")
    shutil.rmtree(records / "agents" / "ppo__seed2")
    text = write_report(latents, name="other", report_dir=reports, compare=[records]).read_text()
    assert "| ppo on pixels | 0 | 300.0 ± 2.0 | 4 |" in text and "| ppo on latents | 1 | 520.0 ± 2.0 | 4 |" in text


def test_report_title_says_what_it_holds_and_paths_are_relative(pipeline_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (pipeline_dir / "agents" / "ppo__seed0" / "eval.mp4").write_bytes(b"")
    text = write_report(pipeline_dir, name="car", report_dir="reports").read_text()
    assert text.startswith("<!-- generated: begin -->\n# CarRacing-v3: agents on latents vs pixels (car)\n")
    assert "`python -m experiments.pipeline.report run --name car` from the pipeline output `run`" in text
    assert "- `run/agents/ppo__seed0/eval.mp4`" in text
    assert str(tmp_path) not in text
    shutil.rmtree(pipeline_dir / "agents" / "pixels-ppo__seed0")
    text = write_report(pipeline_dir, name="car", report_dir="reports").read_text()
    assert text.startswith("<!-- generated: begin -->\n# CarRacing-v3: agents on latents (car)\n")


def test_the_report_reads_pipeline_records_without_importing_the_pipeline():
    tree = ast.parse(Path(report.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "experiments.pipeline.records" in imported
    assert "experiments.pipeline.stages" not in imported  # the pipeline imports the report, never the other way round


def test_a_rewrite_keeps_the_prose_outside_the_generated_part(pipeline_dir, tmp_path):
    path = write_report(pipeline_dir, name="car", report_dir=tmp_path)
    begin, end = markdown.generated_markers()
    first = path.read_text()
    assert first.startswith(begin + "\n# CarRacing-v3") and first.endswith(end + "\n")  # a new report: all generated
    path.write_text("Written by hand, above.\n\n" + first + "\n## Notes\n\nWritten by hand, below.\n")
    _agent(pipeline_dir, "ppo", 3, 560.0)
    text = write_report(pipeline_dir, name="car", report_dir=tmp_path).read_text()
    assert text.startswith("Written by hand, above.\n\n" + begin + "\n# CarRacing-v3")
    assert text.endswith(end + "\n\n## Notes\n\nWritten by hand, below.\n")
    assert "| ppo on latents | 3 | 560.0 ± 2.0 |" in text and text.count("## Returns") == 1


def test_markdown_parts_are_replaced_or_added_and_unmarked_text_is_never_overwritten(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("# Benchmarks\n\nBy hand.\n")
    with pytest.raises(ValueError, match="without the '<!-- generated: begin -->'"):
        markdown.write_markdown(path, ["## a table"])
    markdown.write_markdown(path, ["## collect", "v1"], part="collect")
    markdown.write_markdown(path, ["## gpu", "v1"], part="gpu")
    markdown.write_markdown(path, ["## collect", "v2"], part="collect")
    assert path.read_text() == (
        "# Benchmarks\n\nBy hand.\n\n"
        "<!-- generated: begin collect -->\n## collect\n\nv2\n<!-- generated: end collect -->\n\n"
        "<!-- generated: begin gpu -->\n## gpu\n\nv1\n<!-- generated: end gpu -->\n"
    )
    path.write_text(path.read_text().replace("<!-- generated: end gpu -->\n", ""))
    with pytest.raises(ValueError, match="found 1 and 0"):
        markdown.write_markdown(path, ["## gpu", "v2"], part="gpu")
