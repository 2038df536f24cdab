"""Runs (issue 12): every run recorded, steps cached by the code they pin, reruns verified.

A project of four git-pinned steps, each in its own module directory, plus a helper
module outside them that one step imports and a directory no step uses.
"""

from __future__ import annotations

import importlib
import sqlite3
import sys

import pytest

import zgit
from zgit import Pipeline, Repository
from zgit.errors import RerunError, RunNotFoundError
from zgit.runs.runner import store_for

STEP = '''\
from zgit import BaseStep
{imports}

class {name}(BaseStep):
    def __init__(self, {params}):
{assign}

    def run(self, data):
{body}
'''

STEPS = {
    "source": ("Numbers", "n=5", "        return list(range(self.n))"),
    "scale": ("Scale", "factor=2", "        return [x * self.factor for x in data]"),
    "fit": ("Fit", "", "        return {'total': sum(data) + OFFSET, 'version': VERSION}"),
    "score": ("Score", "", "        return {'score': data['total'] * 10}"),
}


def write_step(repo, module, version=0, extra="", body=None):
    name, params, default_body = STEPS[module]
    body = body or default_body
    imports = "from common.util import OFFSET\nVERSION = %d" % version if module == "fit" else ""
    assign = "".join(f"        self.{p.split('=')[0]} = {p.split('=')[0]}\n" for p in params.split(",") if p) or "        pass\n"
    repo.write(f"steps/{module}/__init__.py", "")
    repo.write(f"steps/{module}/step.py", STEP.format(imports=imports, name=name, params=params,
                                                       assign=assign.rstrip("\n"), body=body) + extra)


def make_project(repo):
    repo.write(".gitignore", "__pycache__/\n*.pyc\n")
    repo.write("steps/__init__.py", "")
    for module in STEPS:
        write_step(repo, module)
    repo.write("common/__init__.py", "")
    repo.write("common/util.py", "OFFSET = 0\n")
    repo.write("docs/notes.txt", "notes\n")
    Repository.init(repo.path)
    repo.commit("project")
    return repo


def purge():
    """Forget the imported working versions (the files may have changed since)."""
    for name in [n for n in sys.modules if n == "steps" or n.startswith(("steps.", "common"))]:
        del sys.modules[name]
    importlib.invalidate_caches()


def fresh(module):
    """Import the working version of ``steps.<module>.step``."""
    if str(_root[0]) not in sys.path:
        sys.path.insert(0, str(_root[0]))
    return importlib.import_module(f"steps.{module}.step")


_root = [None]


def build(repo, name="numbers", enable_cache=True, step_cache=None, **args):
    _root[0] = repo.path
    purge()
    pipeline = Pipeline(name, enable_cache=enable_cache)
    step_cache = step_cache or {}
    pipeline.add_step("source", fresh("source").Numbers(n=args.get("n", 5)), enable_cache=step_cache.get("source"))
    pipeline.add_step("scale", fresh("scale").Scale(factor=args.get("factor", 2)), enable_cache=step_cache.get("scale"))
    pipeline.add_step("fit", fresh("fit").Fit(), enable_cache=step_cache.get("fit"))
    pipeline.add_step("score", fresh("score").Score(), enable_cache=step_cache.get("score"))
    return pipeline


def last_run(repo):
    repository = Repository(repo.path)
    return repository.get_run(repository.runs(limit=1)[0].id)


def executed(repo):
    return [s.name for s in last_run(repo).steps if not s.cached]


@pytest.fixture
def project(repo):
    return make_project(repo)


def test_a_run_is_recorded(project):
    outputs = build(project).run()
    assert outputs["score"] == {"score": 200}
    run = last_run(project)
    assert run.status == "completed" and run.pipeline == "numbers" and run.clean
    assert run.head == project.head() and run.zgit_version == zgit.__version__
    assert "steps/fit" not in run.yaml and "steps.fit.step.Fit@" + project.head() in run.yaml
    assert [s.name for s in run.steps] == ["source", "scale", "fit", "score"]
    fit = run.steps[2]
    assert fit.source == f"steps.fit.step.Fit@{project.head()}" and fit.args == {}
    assert run.steps[0].args == {"n": 5}  # defaults are recorded (issue 15 item 8)
    assert fit.code_identity.startswith("git:") and "+" in fit.code_identity  # imports common/util.py
    assert run.steps[1].code_identity == "git:" + project.git("rev-parse", "HEAD:steps/scale").strip()
    assert run.input_digest == run.steps[0].input_digest
    assert all(a.output_digest == b.input_digest for a, b in zip(run.steps, run.steps[1:]))
    assert executed(project) == ["source", "scale", "fit", "score"]
    # the store is never committed; the pipeline file the run saved is all that is new
    assert project.status() == "?? pipelines/numbers.yaml\n"
    assert (project.path / ".zgit/store/.gitignore").read_text().splitlines()[-1] == "*"


def test_second_run_executes_no_step(project):
    first = build(project).run()
    again = build(project).run()
    assert again == first and executed(project) == []
    run = last_run(project)
    previous = Repository(project.path).runs()[1].id
    assert {s.cached_from for s in run.steps} == {previous}
    # cached outputs come back as what was produced
    assert again["fit"] == {"total": 20, "version": 0}


def test_a_commit_to_one_step_directory_reruns_that_step_and_the_later_ones(project):
    build(project).run()
    write_step(project, "scale", body="        return [x * self.factor + 1 for x in data]")
    project.commit("scale differently")
    outputs = build(project).run()
    assert executed(project) == ["scale", "fit", "score"] and outputs["score"] == {"score": 250}


def test_a_rerun_step_with_the_same_output_leaves_the_later_steps_cached(project):
    # The later steps' keys hold their input's digest: same bytes in, same key.
    build(project).run()
    write_step(project, "scale", extra="\n# a comment changes the tree, not the output\n")
    project.commit("comment")
    build(project).run()
    assert executed(project) == ["scale"]


def test_a_commit_to_one_step_directory_reruns_exactly_the_steps_whose_inputs_change(project):
    build(project).run()
    write_step(project, "fit", version=1)
    project.commit("fit v1")
    outputs = build(project).run()
    assert executed(project) == ["fit", "score"]
    assert outputs["fit"]["version"] == 1


def test_a_commit_touching_only_other_directories_reruns_nothing(project):
    build(project).run()
    project.write("docs/notes.txt", "more notes\n")
    project.write("README.md", "readme\n")
    project.commit("docs")
    build(project).run()
    assert executed(project) == []


def test_a_commit_to_a_module_imported_from_outside_the_directory_reruns_its_importers(project):
    build(project).run()
    # (another size: a rewrite within the same second and of the same size would let
    # Python's bytecode cache serve the old module, with bytecode writing on)
    project.write("common/util.py", "OFFSET = 10\n")
    project.commit("offset")
    outputs = build(project).run()
    assert executed(project) == ["fit", "score"] and outputs["score"] == {"score": 300}


def test_changing_one_steps_args_reruns_that_step_and_the_ones_after(project):
    build(project).run()
    build(project, factor=3).run()
    assert executed(project) == ["scale", "fit", "score"]
    build(project, factor=3).run()
    assert executed(project) == []


def test_cache_switches(project, monkeypatch):
    build(project).run()
    build(project, enable_cache=False).run()
    assert executed(project) == ["source", "scale", "fit", "score"]
    build(project, enable_cache=False, step_cache={"fit": True}).run()
    assert executed(project) == ["source", "scale", "score"]
    build(project, step_cache={"scale": False}).run()
    assert executed(project) == ["scale"]
    build(project).run(enable_cache=False)
    assert executed(project) == ["source", "scale", "fit", "score"]
    monkeypatch.setenv("ZGIT_DISABLE_CACHE", "1")
    build(project).run(enable_cache=True)
    assert executed(project) == ["source", "scale", "fit", "score"]
    monkeypatch.delenv("ZGIT_DISABLE_CACHE")
    build(project).run()
    assert executed(project) == []


def test_an_unpinned_step_is_recorded_as_not_reproducible_and_cached_by_its_files(project):
    project.write("steps/scale/extra.py", "X = 1\n")  # dirty
    with pytest.warns(zgit.UnpinnedSourceWarning, match="not reproducible"):
        build(project).run()
    run = last_run(project)
    assert not run.reproducible and run.steps[1].code_identity.startswith("tree:")
    with pytest.warns(zgit.UnpinnedSourceWarning):
        build(project).run()
    assert executed(project) == []
    project.write("steps/scale/extra.py", "X = 2\n")  # the working files changed
    with pytest.warns(zgit.UnpinnedSourceWarning):
        build(project).run()
    assert executed(project) == ["scale"]
    with pytest.raises(RerunError, match="not pinned"):
        Repository(project.path).rerun(run.id)
    from zgit.audit import audit_runs

    found = {r["run"]: [f.code for f in r["findings"]] for r in audit_runs(Repository(project.path))}
    assert found[run.id] == ["run-unpinned"]


def test_a_failing_step_is_recorded_and_its_error_propagates(project):
    _root[0] = project.path
    purge()
    pipeline = Pipeline("failing")
    pipeline.add_step("score", fresh("score").Score())
    with pytest.raises(TypeError):
        pipeline.run(data=None)
    run = last_run(project)
    assert run.status == "failed" and run.error.startswith("TypeError")
    assert run.steps[0].error.startswith("TypeError") and run.steps[0].output_digest is None
    with pytest.raises(RerunError, match="failed"):
        Repository(project.path).rerun(run.id)


def test_rerun_of_a_run_made_before_the_step_changed_reproduces_it(project):
    build(project).run()
    run = last_run(project)
    write_step(project, "fit", version=7)
    project.commit("fit v7")
    status, files = project.status(), project.snapshot()
    for strategy in ("checkout", "memory"):
        report = Repository(project.path).rerun(run.id, strategy=strategy)
        assert report.reproduced and report.summary == "reproduced: 4/4"
        assert [s.verdict for s in report.steps] == ["identical"] * 4
        zgit.loader.forget_loaded()
    assert (project.status(), project.snapshot()) == (status, files)
    # the rerun recorded nothing
    assert len(Repository(project.path).runs()) == 1


NONDETERMINISTIC = '''
import random


class Noisy(BaseStep):
    def run(self, data):
        return {"values": data, "noise": random.random()}


class Shuffled(BaseStep):
    def run(self, data):
        keys = ["a", "b", "c", "d", "e", "f"]
        random.shuffle(keys)
        return {k: len(k) for k in keys}
'''


def test_rerun_reports_a_nondeterministic_step_as_different_naming_it(project):
    write_step(project, "scale", extra=NONDETERMINISTIC)
    project.commit("noisy")
    _root[0] = project.path
    purge()
    module = fresh("scale")
    pipeline = Pipeline("noisy")
    pipeline.add_step("source", fresh("source").Numbers())
    pipeline.add_step("noisy", module.Noisy())
    pipeline.add_step("shuffled", module.Shuffled())
    pipeline.run()
    run = last_run(project)
    report = Repository(project.path).rerun(run.id)
    verdicts = {s.step: s for s in report.steps}
    assert verdicts["source"].verdict == "identical"
    assert verdicts["noisy"].verdict == "different" and "output['noise']" in verdicts["noisy"].detail
    # a dict built in another order: another pickle, an equal value
    assert verdicts["shuffled"].verdict in ("equal", "identical")
    assert not report.reproduced and report.summary == "reproduced: 2/3"


def test_run_lookup_errors(project):
    build(project).run()
    repository = Repository(project.path)
    with pytest.raises(RunNotFoundError, match="zgit runs"):
        repository.get_run("19990101")
    run_id = repository.runs()[0].id
    assert repository.get_run(run_id[:16]).id == run_id


def test_store_path_from_config_and_environment(project, tmp_path, monkeypatch):
    (project.path / ".zgit/config.yaml").write_text("store:\n  path: ../elsewhere\n")
    repository = Repository(project.path)
    assert store_for(repository).path == project.path / "../elsewhere"
    monkeypatch.setenv("ZGIT_STORE", str(tmp_path / "env-store"))
    build(project).run(repo=project.path)
    assert (tmp_path / "env-store" / "runs.sqlite").is_file()
    assert not (project.path / ".zgit/store").exists()
    (project.path / ".zgit/config.yaml").write_text("store: [1]\n")
    with pytest.raises(zgit.ConfigError, match="'store'"):
        Repository(project.path).config


def test_gc_keeps_what_kept_runs_refer_to(project):
    build(project).run()
    build(project, factor=3).run()
    build(project, factor=4).run()
    repository = Repository(project.path)
    store = repository.run_store
    deleted, removed = store.gc(keep_last=1)
    assert len(deleted) == 2 and removed > 0
    kept = repository.get_run(repository.runs()[0].id)
    assert all(store.has(s.output_digest) for s in kept.steps) and store.has(kept.input_digest)
    assert repository.rerun(kept.id).reproduced
    build(project, factor=4).run()
    assert executed(project) == []
    build(project).run()  # factor=2's cache entries went with their runs
    assert executed(project) == ["scale", "fit", "score"]


def test_audit_reports_recorded_runs_that_cannot_be_rerun(project):
    from zgit.audit import audit_runs

    build(project).run()
    repository = Repository(project.path)
    assert audit_runs(repository) == []
    run = repository.get_run(repository.runs()[0].id)
    repository.run_store.artifact_path(run.input_digest).unlink()
    found = audit_runs(repository)
    assert [r["run"] for r in found] == [run.id]
    assert [f.code for f in found[0]["findings"]] == ["run-missing-input"]
    with pytest.raises(RerunError, match="first input"):
        repository.rerun(run.id)
    # a pinned commit that is gone (history rewritten, a shallow clone)
    gone = run.steps[1].source.split("@")[0] + "@" + "0" * 40
    db = sqlite3.connect(str(repository.run_store.path / "runs.sqlite"))
    with db:
        db.execute("UPDATE steps SET source = ? WHERE run_id = ? AND position = 1", (gone, run.id))
    db.close()
    [entry] = audit_runs(repository)
    assert [f.code for f in entry["findings"]] == ["run-missing-input", "run-missing-commit"]
    assert "step scale: commit 0000000000" in entry["findings"][1].message


def test_code_identity_kinds(project):
    from zgit.runs.keys import cache_key, code_identity

    repository = Repository(project.path)
    dist = zgit.Source("zgit.steps.split", "RandomSplit", f"zgit_{zgit.__version__}")
    assert code_identity(dist, repository) == f"dist:zgit_{zgit.__version__}"
    assert cache_key(dist, "x", {"a": object()}, "d") is None  # args that are not data: no cache
    assert cache_key(dist, None, {}, "d") is None
    assert cache_key(dist, "x", {"a": 1}, "d") != cache_key(dist, "x", {"a": 1.0}, "d")
    assert cache_key(dist, "x", {"a": 1}, "d") != cache_key(dist, "x", {"a": True}, "d")
    assert cache_key(dist, "x", {"a": 1, "b": 2}, "d") == cache_key(dist, "x", {"b": 2, "a": 1}, "d")
    # order inside a value can matter to the step (RandomSplit's split): it is kept
    assert cache_key(dist, "x", {"s": {"t": 1, "e": 2}}, "d") != cache_key(dist, "x", {"s": {"e": 2, "t": 1}}, "d")
    missing = zgit.Source("steps.fit.step", "Fit", "0" * 40)
    assert code_identity(missing, repository) is None


UNPICKLABLE = '''

class Handle(BaseStep):
    def run(self, data):
        return {"values": data, "callback": lambda x: x}


class Unwrap(BaseStep):
    def run(self, data):
        return data["values"]
'''


def test_an_output_that_cannot_be_pickled_is_not_recorded_and_the_run_goes_on(project):
    write_step(project, "scale", extra=UNPICKLABLE)
    project.commit("handle")
    _root[0] = project.path
    purge()
    module = fresh("scale")
    pipeline = Pipeline("handles")
    pipeline.add_step("source", fresh("source").Numbers())
    pipeline.add_step("handle", module.Handle())
    pipeline.add_step("unwrap", module.Unwrap())
    for _ in range(2):
        with pytest.warns(RuntimeWarning, match="output of step 'handle' cannot be pickled"):
            outputs = pipeline.run(save=False)
        assert outputs["unwrap"] == [0, 1, 2, 3, 4]
    run = last_run(project)
    assert run.status == "completed" and run.steps[1].output_digest is None
    assert [s.cached for s in run.steps] == [True, False, False]  # nothing to key 'unwrap' on
    with pytest.raises(RerunError, match="step handle: its output could not be pickled"):
        Repository(project.path).rerun(run.id)
