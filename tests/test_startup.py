"""Start-up stays light (issue 11): ``import zgit``, ``zgit --help`` and ``zgit audit`` import
only what they use.  Which modules are imported, never how long it takes (the timings are
scripts/bench.py's ``startup`` figures)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HEAVY = ("pygit2", "yaml", "filelock", "importlib_metadata")


def imported_after(code: str, cwd: Path) -> dict:
    """Run ``code`` in a fresh process; which of HEAVY it imported, and what it printed."""
    probe = textwrap.dedent(code) + textwrap.dedent(f"""
        import json as _json, sys as _sys
        _sys.__stdout__.write("\\n" + _json.dumps(sorted(m for m in {HEAVY!r} if m in _sys.modules)) + "\\n")
    """)
    result = subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    *output, heavy = result.stdout.rstrip("\n").split("\n")
    return {"heavy": json.loads(heavy), "stdout": "\n".join(output)}


def test_import_zgit_imports_no_git_yaml_or_locks(tmp_path):
    got = imported_after("import zgit", tmp_path)
    assert got["heavy"] == []


def test_zgit_help_imports_no_git_yaml_or_locks(tmp_path):
    got = imported_after("""\
        from zgit.cli import main
        try:
            main(["--help"])
        except SystemExit as exc:
            assert exc.code == 0, exc.code
    """, tmp_path)
    assert "usage: zgit" in got["stdout"]
    assert got["heavy"] == []


def test_zgit_audit_imports_git_and_yaml_only(repo):
    repo.write("trainers/tiny/__init__.py", "")
    repo.write("trainers/tiny/step.py", "class Step:\n    pass\n")
    sha = repo.commit("a step")
    repo.write("pipelines/one.yaml", f"version: '1'\nname: one\nsteps:\n  a:\n    source: trainers.tiny.step.Step@{sha}\n")
    got = imported_after("""\
        from zgit.cli import main
        code = main(["audit"])
        assert code == 0, code
    """, repo.path)
    assert "1 ok" in got["stdout"], got["stdout"]
    assert got["heavy"] == ["pygit2", "yaml"]


@pytest.mark.parametrize("name", ["BaseStep", "Pipeline", "Repository", "Source", "load_source", "recover",
                                  "resolve_source"])
def test_every_public_name_is_there_on_first_use(name, tmp_path):
    import zgit

    value = getattr(zgit, name)
    assert value is getattr(zgit, name)
    assert name in dir(zgit)
    assert getattr(value, "__name__", None) == name


def test_star_import_and_unknown_names(tmp_path):
    out = subprocess.run([sys.executable, "-c", textwrap.dedent("""\
        import zgit
        namespace = {}
        exec("from zgit import *", namespace)
        assert set(zgit.__all__) <= set(namespace), set(zgit.__all__) - set(namespace)
        try:
            zgit.no_such_name
        except AttributeError as exc:
            print(exc)
    """)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "module 'zgit' has no attribute 'no_such_name'"
