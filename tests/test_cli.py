"""The ``zgit`` command line through the real entry point (``python -m zgit`` runs the same
``zgit.cli:main`` as the console script): every command, its help, its exit codes."""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests._cli import ROOT, TRAINER, Project, assert_no_traceback, command, zgit, zgit_env, zgit_many
from tests.conftest import WorkTree

COMMANDS = ("audit", "init", "resolve", "show", "load", "pipelines", "pin", "recover", "demo")


@pytest.fixture
def project(tmp_path) -> Project:
    return Project(tmp_path / "project")


def test_version_help_and_usage_errors(tmp_path):
    from zgit import __version__

    calls = [("--version",), ("--help",), ("audit", "--help")] + [
        (), ("frobnicate",), ("load",), ("show", "a", "b"), ("pin", "--chek"),
        ("load", "x.Y@" + "a" * 40, "--strategy", "teleport"),
    ]
    results = zgit_many(calls, cwd=tmp_path)
    assert_no_traceback(*results)
    version, main_help, audit_help, *usage = results
    assert version.returncode == 0 and version.stdout.strip() == f"zgit {__version__}"
    assert main_help.returncode == 0
    for name in COMMANDS:
        assert name in main_help.stdout
    assert audit_help.returncode == 0 and "zgit audit --strict" in audit_help.stdout
    for result in usage:
        assert result.returncode == 2, str(result)
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1, str(result)
        assert re.match(r"zgit( \w+)?: error: ", result.stderr), str(result)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_with_an_example(name, capsys):
    from zgit.cli import main

    with pytest.raises(SystemExit) as exit_info:  # argparse's --help exits 0 after printing
        main([name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: zgit {name}")
    assert re.search(r"^examples?:\n  zgit ", out, re.M), out


def test_console_script_is_installed_and_runs(tmp_path):
    script = Path(sys.executable).parent / "zgit"
    if not script.exists():
        pytest.skip("zgit is not installed as a console script in this environment (pip install -e .)")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, env=zgit_env())
    assert result.returncode == 0 and result.stdout.startswith("zgit ")


def test_init(tmp_path):
    (tmp_path / "fresh").mkdir()
    repo = WorkTree(tmp_path / "fresh")
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    first = zgit("init", cwd=repo.path)
    again = zgit("init", cwd=repo.path)
    nowhere = zgit("init", cwd=outside)
    assert_no_traceback(first, again, nowhere)
    assert first.returncode == 0 and again.returncode == 0, str(first)
    assert (repo.path / ".zgit" / "config.yaml").is_file() and (repo.path / "pipelines").is_dir()
    assert nowhere.returncode == 1 and nowhere.stderr.startswith("zgit: error: "), str(nowhere)
    assert len(nowhere.stderr.strip().splitlines()) == 1


def _ambiguous_prefix(repo: WorkTree, sha: str) -> str:
    """Write a blob whose id shares ``sha``'s first 5 hex digits; return that prefix."""
    prefix = sha[:5]
    n = 0
    while True:
        content = f"collision {n}\n".encode()
        if hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest().startswith(prefix):
            break
        n += 1
    proc = subprocess.run(["git", "hash-object", "-w", "--stdin"], input=content, cwd=repo.path,
                          capture_output=True, check=True)
    assert proc.stdout.decode().startswith(prefix)
    return prefix


def test_show_reads_the_object_database(project: Project):
    p = project
    p.write("trainers/mine/step.py", "class Trainer:\n    'the working version, not committed'\n")
    ambiguous = _ambiguous_prefix(p.repo, p.v0)
    full, short, branch, dist, amb, unknown, nomodule, unpinned, bad = zgit_many([
        ("show", f"{TRAINER}@{p.v0}"),
        ("show", f"{TRAINER}@{p.v1[:7]}"),
        ("show", f"{TRAINER}@main"),
        ("show", f"yaml.SafeLoader@pyyaml_{yaml.__version__}"),
        ("show", f"{TRAINER}@{ambiguous}"),
        ("show", f"{TRAINER}@{'0' * 40}"),
        ("show", f"trainers.nothing.Trainer@{p.v1}"),
        ("show", TRAINER),
        ("show", "not a source"),
    ], cwd=p.path)
    assert_no_traceback(full, short, branch, dist, amb, unknown, nomodule, unpinned, bad)
    assert full.returncode == 0 and "VERSION = 0" in full.stdout, str(full)
    assert short.returncode == 0 and "VERSION = 1" in short.stdout, str(short)
    assert branch.returncode == 0 and "VERSION = 1" in branch.stdout
    assert "working version" not in full.stdout + short.stdout + branch.stdout
    assert dist.returncode == 0 and "__version__" in dist.stdout, str(dist)
    for result in (amb, unknown, nomodule, unpinned, bad):
        assert result.returncode == 1, str(result)
        assert result.stderr.startswith("zgit: error: ") and result.stdout == ""
    assert "ambiguous" in amb.stderr


def test_load_reports_class_pin_strategy_and_time(project: Project):
    p = project
    before = p.repo.status()
    memory, checkout, default, missing = zgit_many([
        ("load", f"{TRAINER}@{p.v0[:8]}", "--strategy", "memory"),
        ("load", f"{TRAINER}@{p.v0}", "--strategy", "checkout"),
        ("load", f"{TRAINER}@{p.v1}"),
        ("load", f"trainers.mine.step.Missing@{p.v1}"),
    ], cwd=p.path)
    assert_no_traceback(memory, checkout, default, missing)
    for result, strategy, sha in ((memory, "memory", p.v0), (checkout, "checkout", p.v0), (default, "checkout", p.v1)):
        assert result.returncode == 0, str(result)
        assert "Trainer (class)" in result.stdout
        assert f"pin       {sha}" in result.stdout
        assert f"strategy  {strategy}" in result.stdout
        assert re.search(r"^time +\d+(\.\d+)? ms$", result.stdout, re.M)
    assert missing.returncode == 1 and missing.stderr.startswith("zgit: error: "), str(missing)
    assert p.repo.status() == before


def test_resolve_import_path_and_file_path(project: Project):
    p = project
    by_name, by_file, entry_point, missing_file, bad_name = zgit_many([
        ("resolve", TRAINER),
        ("resolve", "trainers/mine/step.py:Trainer"),
        ("resolve", "trainers.mine.step:Trainer"),
        ("resolve", "trainers/mine/nope.py:Trainer"),
        ("resolve", "trainers.mine.step.NoSuch"),
    ], cwd=p.path)
    assert_no_traceback(by_name, by_file, entry_point, missing_file, bad_name)
    head = p.repo.head()
    assert by_name.returncode == 0 and by_name.stdout.strip() == f"{TRAINER}@{head}", str(by_name)
    assert by_file.returncode == 0 and by_file.stdout.strip() == f"{TRAINER}@{head}", str(by_file)
    assert entry_point.stdout.strip() == f"{TRAINER}@{head}", str(entry_point)
    assert missing_file.returncode == 2, str(missing_file)
    assert bad_name.returncode == 1 and bad_name.stderr.startswith("zgit: error: "), str(bad_name)
    p.write("trainers/mine/helper.py", "HELPER = 2  # not committed\n")
    dirty = zgit("resolve", TRAINER, cwd=p.path)
    assert dirty.returncode == 0 and dirty.stdout.strip() == TRAINER, str(dirty)
    assert "warning" in dirty.stderr and "trainers/mine/helper.py" in dirty.stderr


def test_pipelines_lists_names_files_and_status(project: Project):
    p = project
    p.pipeline("Pinned One", {"train": f"{TRAINER}@{p.v1}"})
    p.pipeline("Old One", {"train": f"{TRAINER}@{p.v0}"})
    p.pipeline("Loose One", {"train": TRAINER, "dist": f"yaml.SafeLoader@pyyaml_{yaml.__version__}"})
    p.write("pipelines/junk.yaml", "[1, 2")
    result = p.zgit("pipelines")
    assert_no_traceback(result)
    assert result.returncode == 0, str(result)
    lines = {line.split("  ")[0]: line for line in result.stdout.splitlines()}
    assert "pipelines/pinned_one.yaml" in lines["Pinned One"] and "pinned (1 step: 1 git" in lines["Pinned One"]
    assert "drifted" in lines["Old One"]
    assert "NOT reproducible" in lines["Loose One"] and "unpinned" in lines["Loose One"]
    assert "1 dist" in lines["Loose One"]
    assert "pipelines/junk.yaml" in lines["-"] and "bad-yaml" in lines["-"]
    (p.path.parent / "empty").mkdir()
    empty = WorkTree(p.path.parent / "empty")
    none = zgit("pipelines", cwd=empty.path)
    assert none.returncode == 0 and "no pipelines" in none.stdout


PIPELINE_WITH_COMMENTS = """\
# Stored by hand; keep this comment.
version: '1'
name: Handmade
steps:
  old:
    source: {trainer}@{v0}   # an old pin
    args: {{epochs: 3}}
  loose:
    source: '{trainer}'
  flow: {{source: {trainer}, args: {{epochs: 1}}}}
  dist:
    source: yaml.SafeLoader@pyyaml_{yaml}
  current:
    source: {trainer}@{v1}
owner: data-team
"""


def test_pin_rewrites_only_sources_and_check_reports(project: Project):
    p = project
    path = p.write("pipelines/handmade.yaml", PIPELINE_WITH_COMMENTS.format(
        trainer=TRAINER, v0=p.v0, v1=p.v1, yaml=yaml.__version__))
    head = p.repo.head()
    original = path.read_text()

    check = p.zgit("pin", "--check")
    assert check.returncode == 1, str(check)
    assert path.read_text() == original
    assert check.stdout.count("would pin") == 3 and "steps.old" in check.stdout and "drifted" in check.stdout

    done = p.zgit("pin", "pipelines/handmade.yaml")
    assert done.returncode == 0, str(done)
    text = path.read_text()
    assert text == (original.replace(f"{TRAINER}@{p.v0}", f"{TRAINER}@{head}")
                    .replace(f"'{TRAINER}'", f"'{TRAINER}@{head}'")
                    .replace(f"{{source: {TRAINER},", f"{{source: {TRAINER}@{head},"))
    assert "# an old pin" in text and "owner: data-team" in text
    data = yaml.safe_load(text)
    assert data["steps"]["current"]["source"] == f"{TRAINER}@{p.v1}"   # not drifted: kept
    assert data["steps"]["dist"]["source"].endswith(yaml.__version__)

    again, audit = zgit_many([("pin", "--check"), ("audit",)], cwd=p.path)
    assert again.returncode == 0 and "every git source is pinned" in again.stdout, str(again)
    assert audit.returncode == 0, str(audit)

    # A dirty module directory is never pinned to HEAD.
    path.write_text(original)
    p.write("trainers/mine/helper.py", "HELPER = 3  # not committed\n")
    dirty_check, dirty = zgit_many([("pin", "--check"), ("pin",)], cwd=p.path)
    for result in (dirty_check, dirty):
        assert result.returncode == 1, str(result)
        assert "cannot pin" in result.stderr and "trainers/mine/helper.py" in result.stderr
    assert path.read_text() == original
    assert_no_traceback(check, done, again, audit, dirty_check, dirty)


SLOW_STEP = """\
import pathlib, time
pathlib.Path({marker!r}).write_text("started")
time.sleep(60)

class Slow:
    pass
"""


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"zgit exited early: {proc.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError("the pinned module never started")
        time.sleep(0.02)


def test_recover_after_a_killed_checkout_and_ctrl_c(project: Project, tmp_path):
    p = project
    killed_marker, interrupted_marker = tmp_path / "killed", tmp_path / "interrupted"
    p.write("slow/__init__.py", "")
    p.write("slow/pkg/__init__.py", "")
    p.write("slow/pkg/step.py", SLOW_STEP.format(marker=str(killed_marker)))
    killed_pin = p.commit("slow, for the killed load")
    p.write("slow/pkg/step.py", SLOW_STEP.format(marker=str(interrupted_marker)))
    interrupted_pin = p.commit("slow, for the interrupted load")
    p.write("slow/pkg/step.py", "class Slow:\n    pass\n")
    p.commit("fast again")

    nothing = p.zgit("recover")
    assert nothing.returncode == 0 and "nothing to recover" in nothing.stdout, str(nothing)

    env = zgit_env()
    proc = subprocess.Popen(command("load", f"slow.pkg.step.Slow@{killed_pin}", "--strategy", "checkout"),
                            cwd=p.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(killed_marker, proc)
    proc.kill()
    proc.wait()
    assert "killed" in (p.path / "slow/pkg/step.py").read_text()   # left checked out
    recovered = p.zgit("recover")
    assert recovered.returncode == 0, str(recovered)
    assert "restored slow/pkg/step.py" in recovered.stdout
    assert (p.path / "slow/pkg/step.py").read_text() == "class Slow:\n    pass\n"
    assert p.repo.status() == ""

    proc = subprocess.Popen(command("load", f"slow.pkg.step.Slow@{interrupted_pin}", "--strategy", "memory"),
                            cwd=p.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(interrupted_marker, proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr
    assert_no_traceback(nothing, recovered)


def test_errors_are_one_line_without_traceback(tmp_path, project: Project):
    outside = tmp_path / "outside"
    outside.mkdir()
    results = zgit_many([("pipelines",), ("recover",), ("show", f"{TRAINER}@{'a' * 40}"), ("pin",),
                         ("load", f"{TRAINER}@{'a' * 40}")], cwd=outside)
    results += zgit_many([("load", f"{TRAINER}@{'b' * 40}"), ("load", "nosuch.Thing@no_such_dist_1.0"),
                          ("-C", "does-not-exist", "audit")], cwd=project.path)
    assert_no_traceback(*results)
    for result in results[:-1]:
        assert result.returncode == 1, str(result)
        assert result.stderr.startswith("zgit: error: ") and result.stderr.count("\n") == 1, str(result)
    assert results[-1].returncode == 2


def test_demo(tmp_path):
    pytest.importorskip("zgit.demo", reason="zgit.demo (run_demo) has not landed yet")
    result = zgit("demo", cwd=tmp_path, timeout=300)
    assert_no_traceback(result)
    assert result.returncode == 0, str(result)


def test_pre_commit_hooks():
    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) == {"zgit-audit", "zgit-pin-check"}
    assert hooks["zgit-audit"]["entry"] == "zgit audit"
    assert hooks["zgit-pin-check"]["entry"] == "zgit pin --check"
    for hook in hooks.values():
        assert hook["language"] == "python" and hook["pass_filenames"] is True
        pattern = re.compile(hook["files"])
        assert pattern.search("pipelines/my_pipeline.yaml") and pattern.search("pipelines/x.yml")
        assert not pattern.search("src/pipelines.py") and not pattern.search("other/pipelines/x.yaml")
