"""``zgit audit`` through the real command line: every finding code, exit code, the JSON
shape of DESIGN.md, hostile input, and the guarantee that nothing pinned is executed."""

from __future__ import annotations

import importlib.util
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._cli import TRAINER, Project, assert_no_traceback, command, zgit, zgit_env, zgit_many
from zgit.audit import CODES, audit_paths, module_imports, module_names

SEVERITY = {
    "bad-yaml": "error", "bad-schema": "error", "bad-source": "error", "unpinned": "error",
    "unknown-commit": "error", "missing-module": "error", "missing-class": "error",
    "dist-not-installed": "error", "dist-version-mismatch": "error",
    "drift": "info", "outside-import": "warning",
    "uncommitted-file": "warning",  # issue 11 item 3: git-ignored files the pin depends on
}


HAVE_DISTRIBUTIONS = importlib.util.find_spec("zgit.distributions") is not None


@pytest.fixture
def project(tmp_path) -> Project:
    return Project(tmp_path / "project")


def test_severities_are_as_designed():
    assert CODES == SEVERITY


def test_every_finding_code_in_json_matching_design(project: Project):
    p = project
    # outside-import: a module directory whose files import repository code outside it,
    # absolute and relative going above the directory, also inside a function.
    p.write("trainers/leaky/__init__.py", "")
    p.write("trainers/leaky/step.py", "from common.util import util\n\nclass Leaky:\n    pass\n")
    p.write("trainers/leaky/other.py", "def f():\n    from .. import shared\n    import os, json\n")
    leaky = p.commit("leaky")
    missing_commit = "0" * 40
    p.pipeline("Everything", {
        "ok": f"{TRAINER}@{p.v1}",
        "unpinned": TRAINER,
        "unknown": f"{TRAINER}@{missing_commit}",
        "nomodule": f"trainers.nowhere.step.Trainer@{p.v1}",
        "noclass": f"trainers.mine.step.NoSuchClass@{p.v1}",
        "badsource": "not a source!",
        "notinstalled": "nosuchpkg.Thing@no_such_distribution_1.0",
        "mismatch": "yaml.SafeLoader@pyyaml_0.0.1",
        "drift": f"{TRAINER}@{p.v0}",
        "leaky": f"trainers.leaky.step.Leaky@{leaky}",
    })
    p.write("pipelines/broken.yaml", "version: '1'\nname: [unclosed\n")
    p.write("pipelines/alist.yml", "- 1\n- 2\n")
    p.write("pipelines/nokeys.yaml", "name: Keyless\n")
    result = p.zgit("audit", "--format", "json")
    assert result.returncode == 1, str(result)
    assert_no_traceback(result)
    data = result.json()

    # The shape of DESIGN.md, exactly.
    assert set(data) == {"files", "summary"}
    assert set(data["summary"]) == {"files", "pipelines", "steps", "ok", "errors", "warnings", "infos"}
    for file in data["files"]:
        assert set(file) == {"path", "pipeline", "findings", "steps"}
        for finding in file["findings"]:
            assert set(finding) == {"code", "severity", "message"}
            assert finding["code"] in ("bad-yaml", "bad-schema")
        for step in file["steps"]:
            assert set(step) == {"step", "source", "ok", "findings"}
            assert step["ok"] == (not any(f["severity"] == "error" for f in step["findings"]))
            for finding in step["findings"]:
                assert set(finding) == {"code", "severity", "message"}
                assert finding["severity"] == SEVERITY[finding["code"]]
                assert finding["message"] and "\n" not in finding["message"]

    files = {f["path"]: f for f in data["files"]}
    assert sorted(files) == ["pipelines/alist.yml", "pipelines/broken.yaml", "pipelines/everything.yaml",
                             "pipelines/nokeys.yaml"]
    assert [f["code"] for f in files["pipelines/broken.yaml"]["findings"]] == ["bad-yaml"]
    assert files["pipelines/broken.yaml"]["pipeline"] is None
    assert [f["code"] for f in files["pipelines/alist.yml"]["findings"]] == ["bad-schema"]
    nokeys = files["pipelines/nokeys.yaml"]
    assert {f["code"] for f in nokeys["findings"]} == {"bad-schema"}
    assert any("'version'" in f["message"] for f in nokeys["findings"])
    assert any("'steps'" in f["message"] for f in nokeys["findings"])

    everything = files["pipelines/everything.yaml"]
    assert everything["pipeline"] == "Everything" and everything["findings"] == []
    steps = {s["step"]: s for s in everything["steps"]}
    assert list(steps) == ["ok", "unpinned", "unknown", "nomodule", "noclass", "badsource",
                           "notinstalled", "mismatch", "drift", "leaky"]
    codes = {name: [f["code"] for f in s["findings"]] for name, s in steps.items()}
    assert codes["ok"] == [] and steps["ok"]["ok"] is True
    assert steps["ok"]["source"] == f"{TRAINER}@{p.v1}"
    assert codes["unpinned"] == ["unpinned"]
    assert codes["unknown"] == ["unknown-commit"]
    assert codes["nomodule"] == ["missing-module"]
    assert codes["noclass"] == ["missing-class"]
    assert codes["badsource"] == ["bad-source"]
    assert codes["notinstalled"] == ["dist-not-installed"]
    # zgit.distributions (installed_version) may land after this file; until then nothing
    # counts as installed.
    assert codes["mismatch"] == (["dist-version-mismatch"] if HAVE_DISTRIBUTIONS else ["dist-not-installed"])
    assert codes["drift"] == ["drift"] and steps["drift"]["ok"] is True
    assert "2 files" in steps["drift"]["findings"][0]["message"]
    assert codes["leaky"] == ["outside-import", "outside-import"] and steps["leaky"]["ok"] is True
    leaks = " ".join(f["message"] for f in steps["leaky"]["findings"])
    assert "common.util" in leaks and "common/util.py" in leaks and "trainers/leaky/step.py:1" in leaks
    assert "trainers.shared" in leaks and "trainers/leaky/other.py:2" in leaks
    assert "json" not in leaks.replace(".json", "")
    assert "1.0" in steps["notinstalled"]["findings"][0]["message"]
    assert "0.0.1" in steps["mismatch"]["findings"][0]["message"]
    if not HAVE_DISTRIBUTIONS:
        every_code_expected = set(SEVERITY) - {"dist-version-mismatch"}
    else:
        every_code_expected = set(SEVERITY)

    every_code_expected.discard("uncommitted-file")  # needs a .gitignore: tests/test_layouts.py
    every_code = {f["code"] for file in data["files"] for f in file["findings"]}
    every_code |= {c for cs in codes.values() for c in cs}
    assert every_code == every_code_expected

    summary = data["summary"]
    assert (summary["files"], summary["pipelines"], summary["steps"], summary["ok"]) == (4, 2, 10, 3)
    assert (summary["warnings"], summary["infos"]) == (2, 1)
    assert summary["errors"] == 4 + 7  # broken, alist, nokeys x2 ('version' and 'steps'); 7 steps


def test_exit_codes_text_output_and_strict(project: Project):
    p = project
    p.pipeline("Clean", {"train": f"{TRAINER}@{p.v1}", "again": f"{TRAINER}@{p.v1}"})
    p.write("trainers/leaky/__init__.py", "")
    p.write("trainers/leaky/step.py", "import common.util\n\nclass Leaky:\n    pass\n")
    leaky = p.commit("leaky")
    p.pipeline("Warned", {"leak": f"trainers.leaky.step.Leaky@{leaky}"}, filename="warned")
    p.pipeline("Failing", {"bad": TRAINER}, filename="failing")
    clean, warned, warned_strict, failing, both, default, bad_format, no_path, bad_option = zgit_many([
        ("audit", "pipelines/clean.yaml"),
        ("audit", "pipelines/warned.yaml"),
        ("audit", "--strict", "pipelines/warned.yaml"),
        ("audit", "pipelines/failing.yaml"),
        ("audit", "pipelines/clean.yaml", "pipelines/failing.yaml"),
        ("audit",),
        ("audit", "--format", "xml"),
        ("audit", "pipelines/nope.yaml"),
        ("audit", "--no-such-option"),
    ], cwd=p.path)
    assert_no_traceback(clean, warned, warned_strict, failing, both, default, bad_format, no_path, bad_option)
    assert clean.returncode == 0, str(clean)
    lines = clean.stdout.splitlines()
    assert lines[0].startswith("pipelines/clean.yaml") and "Clean" in lines[0]
    step_lines = [line for line in lines if TRAINER in line]
    assert len(step_lines) == 2 and all(line.split()[0] == "ok" for line in step_lines)
    assert "train" in step_lines[0] and "again" in step_lines[1]
    assert lines[-1].startswith("1 file, 1 pipeline, 2 steps (2 ok)") and "0 errors" in lines[-1]
    assert "\x1b[" not in clean.stdout  # not a TTY: no colour

    assert warned.returncode == 0 and "warning outside-import" in warned.stdout, str(warned)
    assert warned_strict.returncode == 1, str(warned_strict)
    assert failing.returncode == 1 and "FAIL" in failing.stdout and "unpinned" in failing.stdout
    assert both.returncode == 1
    assert default.returncode == 1 and "3 files, 3 pipelines, 4 steps" in default.stdout, str(default)
    for usage in (bad_format, no_path, bad_option):
        assert usage.returncode == 2, str(usage)
        assert usage.stdout == ""
        assert len(usage.stderr.strip().splitlines()) == 1, str(usage)
        assert "error" in usage.stderr
    assert "pipelines/nope.yaml" in no_path.stderr


def _run_on_tty(args, cwd, env):
    """Run zgit with stdout on a pseudo-terminal; returns (exit code, output)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(command(*args), cwd=cwd, env=env, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    os.close(master)
    return proc.returncode, b"".join(chunks).decode()


def test_colour_only_on_a_tty_without_no_color(project: Project):
    p = project
    p.pipeline("Mixed", {"good": f"{TRAINER}@{p.v1}", "bad": TRAINER})
    code, out = _run_on_tty(["audit"], p.path, zgit_env())
    assert code == 1 and "\x1b[31m" in out and "\x1b[32m" in out, out
    code, out = _run_on_tty(["audit"], p.path, zgit_env(NO_COLOR="1"))
    assert code == 1 and "\x1b[" not in out and "FAIL" in out, out


def test_audit_never_imports_or_executes_pinned_code(project: Project, tmp_path):
    p = project
    marker = tmp_path / "EXECUTED"
    payload = f"open({str(marker)!r}, 'w').write('imported')\n"
    p.write("evil/__init__.py", payload)
    p.write("evil/pkg/__init__.py", payload)
    p.write("evil/pkg/step.py", payload + "import evil.pkg.helper\nfrom . import helper\n\n"
            "class Step:\n    " + payload + "\n\ndef __getattr__(name):\n    " + payload)
    p.write("evil/pkg/helper.py", payload)
    p.write("evil/pkg/__main__.py", payload)
    p.write("evil/pkg/conftest.py", payload)
    sha = p.commit("a module that writes a file whenever it is imported")
    p.pipeline("Evil", {
        "step": f"evil.pkg.step.Step@{sha}",
        "missing": f"evil.pkg.step.Other@{sha}",        # resolved by __getattr__ at run time
        "package": f"evil.pkg.Step@{sha}",               # a package module
        "before": f"evil.pkg.step.Step@{p.v1}",           # absent at that pin
    })
    results = zgit_many([("audit",), ("audit", "--format", "json"), ("pipelines",), ("pin", "--check"),
                         ("show", f"evil.pkg.step.Step@{sha}")], cwd=p.path)
    assert_no_traceback(*results)
    assert not marker.exists(), "audit, pipelines, pin or show imported pinned code"
    data = results[1].json()
    steps = {s["step"]: [f["code"] for f in s["findings"]] for s in data["files"][0]["steps"]}
    assert steps["step"] == [] and steps["missing"] == []  # module-level __getattr__ may provide it
    assert steps["package"] == ["missing-class"]
    assert steps["before"] == ["missing-module"]
    # The same in-process: nothing named evil was imported.
    report = audit_paths([p.path / "pipelines"], repo=p.path)
    assert report.exit_code() == 1
    assert not any(name == "evil" or name.startswith("evil.") for name in sys.modules)
    assert not marker.exists()


def test_hostile_input_gives_findings_never_a_traceback(project: Project, tmp_path):
    p = project
    d = p.path / "hostile"
    d.mkdir()
    (d / "binary.yaml").write_bytes(os.urandom(4096) + b"\x00\xff\xfe")
    (d / "empty.yaml").write_text("")
    (d / "list.yaml").write_text("- version: '1'\n")
    (d / "scalar.yaml").write_text("just a string\n")
    (d / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    (d / "deep.yaml").write_text("[" * 20000 + "]" * 20000)
    (d / "deep_block.yaml").write_text("".join("  " * i + "a:\n" for i in range(300)) + "  " * 300 + "x\n")
    (d / "laughs.yaml").write_text(
        "a: &a ['lol','lol','lol','lol','lol','lol','lol','lol','lol']\n"
        + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n"
                  for i in range(8))
    )
    (d / "python_tag.yaml").write_text("!!python/object/apply:os.system ['touch /tmp/zgit-pwned']\n")
    (d / "steps_list.yaml").write_text("version: '1'\nname: x\nsteps: [a, b]\n")
    (d / "step_scalar.yaml").write_text("version: '1'\nname: x\nsteps:\n  a: 3\n  b: {args: {}}\n"
                                        f"  c: {{source: {TRAINER}@{p.v1}, args: [1]}}\n")
    (d / "version2.yaml").write_text(f"version: 2\nname: x\nsteps:\n  a: {{source: {TRAINER}@{p.v1}}}\n")
    (d / "keys.yaml").write_text("? [complex, key]\n: 1\n")
    (d / "timestamp.yaml").write_text("version: !!timestamp not-a-date\n")
    (d / "dir.yaml").mkdir()                       # a directory with a YAML name: skipped
    (d / "broken_link.yaml").symlink_to(d / "nowhere")   # unreadable
    (d / "loop.yaml").symlink_to(d / "loop.yaml")         # unreadable (ELOOP)
    os.mkfifo(d / "fifo.yaml")                              # would block a naive reader
    (d / "notes.txt").write_text("not audited: not YAML by name")
    unreadable = p.path / "plain-file-any-suffix.txt"
    unreadable.write_bytes(b"\x00" * 100)
    result = p.zgit("audit", "--format", "json", "hostile", str(unreadable))
    assert result.returncode == 1, str(result)
    assert_no_traceback(result)
    files = {Path(f["path"]).name: f for f in result.json()["files"]}
    assert "notes.txt" not in files and "dir.yaml" not in files
    assert "plain-file-any-suffix.txt" in files
    assert not Path("/tmp/zgit-pwned").exists()
    codes = {name: [x["code"] for x in f["findings"]] for name, f in files.items()}
    for name in ("binary.yaml", "latin1.yaml", "deep.yaml", "deep_block.yaml", "laughs.yaml", "python_tag.yaml",
                 "broken_link.yaml", "loop.yaml", "fifo.yaml", "timestamp.yaml", "plain-file-any-suffix.txt"):
        assert codes[name] == ["bad-yaml"], (name, files[name])
    for name in ("empty.yaml", "list.yaml", "scalar.yaml", "steps_list.yaml", "version2.yaml", "keys.yaml"):
        assert codes[name] and set(codes[name]) <= {"bad-schema", "bad-yaml"}, (name, files[name])
    assert set(codes["step_scalar.yaml"]) == {"bad-schema"} and len(codes["step_scalar.yaml"]) == 3
    # The good step of a half-broken file is still audited.
    assert [s["step"] for s in files["step_scalar.yaml"]["steps"]] == ["c"]
    assert [s["step"] for s in files["version2.yaml"]["steps"]] == ["a"]
    assert "anchors" in files["laughs.yaml"]["findings"][0]["message"]
    assert "nested more than" in files["deep.yaml"]["findings"][0]["message"]
    assert "nested more than" in files["deep_block.yaml"]["findings"][0]["message"]

    text = p.zgit("audit", "hostile")
    assert text.returncode == 1 and "bad-yaml" in text.stdout
    assert_no_traceback(text)


def test_directory_of_ten_thousand_files(project: Project):
    p = project
    d = p.path / "many"
    d.mkdir()
    other = p.path / "other.dat"
    other.write_text("not YAML by name")
    for i in range(10000):
        if i % 10:
            os.link(other, d / f"f{i:05d}.dat")
        else:
            (d / f"f{i:05d}.yaml").write_text("junk: [" if i % 20 == 0 else f"version: '1'\nname: p{i}\nsteps: {{}}\n")
    started = time.perf_counter()
    result = p.zgit("audit", "--format", "json", "many")
    elapsed = time.perf_counter() - started
    assert_no_traceback(result)
    assert result.returncode == 1
    summary = result.json()["summary"]
    assert summary["files"] == 1000 and summary["pipelines"] == 500 and summary["errors"] == 500
    assert elapsed < 20


def test_ast_top_level_bindings():
    names = module_names(b'''
import os.path
import numpy as np
from x import (A as B, C)
class K: pass
def f(): pass
async def g(): pass
X = Y = 1
(P, [Q, *R]) = 1, [2, 3]
T: int = 1
U: int
if os.path:
    class InIf: pass
elif 0:
    InElif = 1
else:
    from y import InElse
try:
    import InTry
except ImportError as InHandler:
    InExcept = 1
else:
    InTryElse = 1
finally:
    InFinally = 1
with open(x) as InWith:
    InWithBody = 1
for InFor in []:
    InForBody = 1
def outer():
    NotTopLevel = 1
class Outer:
    AlsoNot = 1
''')
    assert names.error is None and not names.dynamic
    for name in ("os", "np", "B", "C", "K", "f", "g", "X", "Y", "P", "Q", "R", "T", "InIf", "InElif",
                 "InElse", "InTry", "InHandler", "InExcept", "InTryElse", "InFinally", "InWith",
                 "InWithBody", "InFor", "InForBody", "outer", "Outer"):
        assert names.binds(name), name
    for name in ("U", "A", "NotTopLevel", "AlsoNot", "path", "numpy"):
        assert not names.binds(name), name
    assert module_names(b"from x import *\n").binds("Anything")
    assert module_names(b"def __getattr__(name):\n    pass\n").binds("Anything")
    broken = module_names(b"class (:\n")
    assert broken.error and "SyntaxError" in broken.error and not broken.binds("X")
    assert module_names(b"\x00\x01").error
    refs = module_imports(b"import a.b, c\nfrom . import d\nfrom ..e import f as g\ndef h():\n    from k import *\n")
    assert [(r.level, r.module, r.names) for r in refs] == [
        (0, "a.b", ()), (0, "c", ()), (1, "", ("d",)), (2, "e", ("f",)), (0, "k", ("*",))]


def test_work_is_cached_per_commit_and_directory(project: Project, monkeypatch):
    """Many files sharing a few pins read each (commit, directory) once, not once per step."""
    from zgit.gitrepo import GitRepo

    p = project
    for n in range(60):
        p.pipeline(f"P{n}", {f"s{i}": f"{TRAINER}@{(p.v0, p.v1)[(n + i) % 2]}" for i in range(5)})
    calls = {"entries": 0, "changed_paths": 0, "blob": 0}
    for name in calls:
        original = getattr(GitRepo, name)

        def counting(self, *args, _name=name, _original=original):
            calls[_name] += 1
            return _original(self, *args)

        monkeypatch.setattr(GitRepo, name, counting)
    report = audit_paths(None, repo=p.path)
    assert report.summary()["steps"] == 300 and report.exit_code() == 0
    assert calls["changed_paths"] <= 2          # one per (pin, directory) that is not HEAD
    assert calls["entries"] <= 8
    assert calls["blob"] <= 10


def test_audit_outside_a_repository_and_relative_paths(tmp_path):
    outside = tmp_path / "nowhere"
    outside.mkdir()
    (outside / "p.yaml").write_text(f"version: '1'\nname: x\nsteps:\n  a: {{source: {TRAINER}@{'a' * 40}}}\n"
                                    "  b: {source: yaml.SafeLoader@no_such_dist_1.0}\n")
    default, explicit = zgit_many([("audit",), ("audit", "--format", "json", "p.yaml")], cwd=outside)
    assert_no_traceback(default, explicit)
    assert default.returncode == 1 and default.stderr.startswith("zgit: error:"), str(default)
    assert "git repository" in default.stderr
    assert explicit.returncode == 1
    data = explicit.json()
    assert data["files"][0]["path"] == "p.yaml"
    assert [[f["code"] for f in s["findings"]] for s in data["files"][0]["steps"]] == [
        ["unknown-commit"], ["dist-not-installed"]]


YAML_CORPUS = [
    b"", b"# only a comment\n", b"~\n", b"null\n", b"a: 1\n", b"a: 1.5e3\nb: .inf\nc: -.nan\n",
    b"a: yes\nb: No\nc: on\nd: OFF\ne: true\n", b"a: 0x1f\nb: 0o17\nc: 017\nd: 1_000\ne: 1:30\n",
    b"a: 2024-01-01\nb: 2024-01-01T10:00:00Z\nc: !!timestamp 2001-12-14 21:59:43.10 -5\n",
    b"a: !!binary aGVsbG8=\n", b"a: !!str 1\nb: !!int '7'\nc: !!float '1'\n", b"a: !custom x\n",
    b"a: &x 1\nb: *x\n", b"base: {a: 1}\nderived:\n  <<: {b: 2}\n  c: 3\n", b"? [1, 2]\n: x\n",
    b"? {a: 1}\n: x\n", b"a: 1\na: 2\n", b"--- 1\n--- 2\n", b"- [a, {b: c}]\n- 'q''uote'\n- \"\\u00e9\\t\"\n",
    "name: caf\u00e9 \u2603\n".encode(), "\ufeffname: bom\n".encode(), "name: utf16\n".encode("utf-16"),
    b"a: =\n", b"a: !!set {x, y}\n", b"a: !!omap [x: 1]\n", b"key: |\n  block\n  text\n",
    b"a: !!python/name:os.system\n", b"[" * 101 + b"]" * 101, b"{a: [" + b"[" * 99 + b"]" * 99 + b"]}\n",
    b"version: '1'\nname: x\nsteps:\n  a: {source: m.n.C@" + b"a" * 40 + b", args: {x: [1, 2.5, null, true]}}\n",
]


@pytest.mark.parametrize("raw", YAML_CORPUS, ids=range(len(YAML_CORPUS)))
def test_fast_yaml_path_reads_exactly_as_the_checked_path(raw, tmp_path):
    """yamlio's fast path for plain documents (what the audit and the loader read with)
    accepts and builds exactly what the event-checked safe loader does."""
    from zgit import yamlio
    from zgit.audit import _read_yaml
    from zgit.errors import ConfigError

    path = tmp_path / "doc.yaml"
    path.write_bytes(raw)
    try:
        expected = ("ok", yamlio._loads_checked(raw, "doc"))
    except ConfigError:
        expected = ("error", None)
    try:
        got = ("ok", _read_yaml(path, "doc"))
    except ConfigError:
        got = ("error", None)
    assert got == expected or (got[0] == expected[0] == "ok" and repr(got) == repr(expected))


def test_repository_without_pipelines_audits_empty(tmp_path):
    (tmp_path / "bare").mkdir()
    from tests.conftest import WorkTree

    repo = WorkTree(tmp_path / "bare")
    result = zgit("audit", cwd=repo.path)
    assert result.returncode == 0 and result.stdout.startswith("no pipeline files found"), str(result)
    assert audit_paths(None, repo=repo.path).to_dict() == {"files": [], "summary": {
        "files": 0, "pipelines": 0, "steps": 0, "ok": 0, "errors": 0, "warnings": 0, "infos": 0}}


def test_source_root_from_config(tmp_path):
    """Module paths, candidates and import resolution start at the configured source root."""
    p = Project(tmp_path / "srcproject")
    p.write(".zgit/config.yaml", "source_root: src\n")
    p.write("src/pkg/__init__.py", "")
    p.write("src/pkg/other.py", "X = 1\n")
    p.write("src/pkg/mod/__init__.py", "")
    p.write("src/pkg/mod/step.py", "from pkg.other import X\nfrom .. import other\nimport trainers\n\nclass Step:\n    pass\n")
    sha = p.commit("src layout")
    p.pipeline("Src", {"good": f"pkg.mod.step.Step@{sha}", "wrong_root": f"src.pkg.mod.step.Step@{sha}",
                       "absent": f"pkg.mod.step.Nope@{sha}"})
    report = audit_paths(None, repo=p.path).to_dict()
    steps = {s["step"]: s["findings"] for s in report["files"][0]["steps"]}
    assert [f["code"] for f in steps["good"]] == ["outside-import"]
    assert "pkg.other (src/pkg/other.py)" in steps["good"][0]["message"]
    assert "trainers" not in steps["good"][0]["message"]   # not below the source root
    assert [f["code"] for f in steps["wrong_root"]] == ["missing-module"]
    assert "src/src/pkg/mod/step.py" in steps["wrong_root"][0]["message"]
    assert [f["code"] for f in steps["absent"]] == ["missing-class", "outside-import"]
