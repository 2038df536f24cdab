"""zgit run, runs, runs show, rerun, gc, and audit's recorded runs, on the demo pipeline."""

from __future__ import annotations


import pytest

from zgit import Repository
from tests._cli import zgit
from tests.test_runs import NONDETERMINISTIC, fresh, make_project, purge, write_step, _root
from tests.test_training_pipeline import NAME, build, import_working, project, write_trainer  # noqa: F401

STEP_NAMES = ["data", "split", "preprocessing", "training", "evaluation"]


def _progress(stderr):
    return [line.split(":")[0:2] for line in stderr.splitlines() if " in " in line and line.endswith(" ms")]


def test_the_demo_pipeline_recorded_cached_and_rerun_after_the_trainer_changed(project):  # noqa: F811
    write_trainer(project, 1, 0.0)
    project.write(".zgit/config.yaml", "")
    project.commit("trainer v1")
    build(import_working().MyAwesomeTrainer).run(repo=project.path)
    project.commit("pipeline")
    [first] = Repository(project.path).runs()
    assert first.status == "completed"

    again = zgit("run", NAME, cwd=project.path)
    assert again.returncode == 0, again
    assert [(s, o.split()[0]) for s, o in _progress(again.stderr)] == [(s, "cached") for s in STEP_NAMES]
    assert "0 executed, 5 cached" in again.stdout

    forced = zgit("run", NAME, "--no-cache", "--strategy", "memory", cwd=project.path)
    assert forced.returncode == 0, forced
    assert [(s, o.split()[0]) for s, o in _progress(forced.stderr)] == [(s, "ran") for s in STEP_NAMES]

    # the trainer moves on; the first run still reproduces from its pinned code
    write_trainer(project, 2, 500.0)
    project.commit("trainer v2")
    rerun = zgit("rerun", first.id, cwd=project.path)
    assert rerun.returncode == 0, rerun
    assert rerun.stdout.splitlines()[-1] == "reproduced: 5/5"
    assert rerun.stdout.count("byte-identical") + rerun.stdout.count("equal by value") == 5
    assert "  training       byte-identical" in rerun.stdout  # the old trainer, the same model

    listing = zgit("runs", cwd=project.path)
    assert listing.returncode == 0 and listing.stdout.splitlines()[0].split()[:3] == ["RUN", "PIPELINE", "STATUS"]
    assert len(listing.stdout.splitlines()) == 4 and first.id in listing.stdout
    as_json = zgit("runs", "--pipeline", NAME, "--format", "json", cwd=project.path).json()
    assert [r["id"] for r in as_json][-1] == first.id and {r["status"] for r in as_json} == {"completed"}
    assert zgit("runs", "--pipeline", "nope", cwd=project.path).stdout == "no runs recorded\n"

    shown = zgit("runs", "show", first.id[:20], cwd=project.path)
    assert shown.returncode == 0, shown
    assert f"run       {first.id}" in shown.stdout and "  training: executed" in shown.stdout
    shown_json = zgit("runs", "show", first.id, "--format", "json", cwd=project.path).json()
    assert [s["name"] for s in shown_json["steps"]] == STEP_NAMES
    assert shown_json["steps"][3]["args"] == {"epochs": 20}  # its own named parameters
    assert shown_json["steps"][1]["args"] == {"split": {"train": 0.7, "eval": 0.3}, "seed": 42}

    gc = zgit("gc", "--keep-last", "1", cwd=project.path)
    assert gc.returncode == 0 and gc.stdout.startswith("deleted 2 run(s)"), gc
    missing = zgit("rerun", first.id, cwd=project.path)
    assert missing.returncode == 1 and "no run" in missing.stderr


def test_rerun_exits_1_and_names_the_step_that_differs(repo):
    make_project(repo)
    write_step(repo, "scale", extra=NONDETERMINISTIC)
    repo.commit("noisy")
    _root[0] = repo.path
    purge()
    from zgit import Pipeline

    pipeline = Pipeline("noisy")
    pipeline.add_step("source", fresh("source").Numbers())
    pipeline.add_step("noisy", fresh("scale").Noisy())
    pipeline.run()
    run_id = Repository(repo.path).runs()[0].id
    result = zgit("rerun", run_id, cwd=repo.path)
    assert result.returncode == 1, result
    lines = result.stdout.splitlines()
    assert lines[-1] == "reproduced: 1/2"
    assert any(line.split()[:2] == ["noisy", "DIFFERENT:"] and "output['noise']" in line for line in lines)
    as_json = zgit("rerun", run_id, "--format", "json", cwd=repo.path).json()
    assert [s["verdict"] for s in as_json["steps"]] == ["identical", "different"]


def test_audit_lists_recorded_runs_that_cannot_be_rerun(repo):
    make_project(repo)
    _root[0] = repo.path
    purge()
    from zgit import Pipeline

    pipeline = Pipeline("numbers")
    pipeline.add_step("source", fresh("source").Numbers())
    pipeline.run()
    repository = Repository(repo.path)
    run = repository.get_run(repository.runs()[0].id)
    clean = zgit("audit", cwd=repo.path)
    assert "cannot be re-run" not in clean.stdout
    repository.run_store.artifact_path(run.input_digest).unlink()
    text = zgit("audit", cwd=repo.path)
    assert "1 recorded run(s) cannot be re-run" in text.stdout and "run-missing-input" in text.stdout
    data = zgit("audit", "--format", "json", cwd=repo.path).json()
    assert data["runs"][0]["run"] == run.id
    assert data["runs"][0]["findings"][0]["code"] == "run-missing-input"
    assert text.returncode == 1 or text.returncode == 0  # the files' verdict decides, not the runs


@pytest.mark.parametrize("args", [["run"], ["runs"], ["runs", "show"], ["rerun"], ["gc"]])
def test_every_run_command_help_has_an_example(repo, args):
    result = zgit(*args, "--help", cwd=repo.path)
    assert result.returncode == 0 and "example:\n  zgit " in result.stdout


def test_run_command_usage_errors(repo):
    make_project(repo)
    assert zgit("gc", cwd=repo.path).returncode == 2
    assert zgit("gc", "--keep-last", "-1", cwd=repo.path).returncode == 2
    missing = zgit("run", "nope", cwd=repo.path)
    assert missing.returncode == 1 and "no pipeline named 'nope'" in missing.stderr


def test_zgit_run_of_a_failing_step_exits_1_with_its_traceback_and_records_it(repo):
    make_project(repo)
    repo.write("pipelines/broken.yaml", "version: '1'\nname: broken\nsteps:\n"
               f"  score: {{source: steps.score.step.Score@{repo.head()}, args: {{}}}}\n")
    result = zgit("run", "broken", cwd=repo.path)
    assert result.returncode == 1, result
    assert "Traceback" in result.stderr and "TypeError" in result.stderr
    run = Repository(repo.path).runs()[0]
    assert run.status == "failed" and f"zgit: error: run {run.id} failed: TypeError" in result.stderr
