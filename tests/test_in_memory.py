"""A pin names the code in memory: a class whose module directory changed on disk after its
modules were imported is never pinned to HEAD (an edit, even committed; another process's
live checkout; a checkout left behind by a killed process), and the common flows never get
a false refusal (import, save, run; loading an older pin first; bytecode on; a module
imported before zgit).  Also: the warning points at the user's own call, and a class
defined in a notebook cell is told apart from other unpinned code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import yaml

import zgit
from zgit import Pipeline, Source, UnpinnedSourceWarning, load_source, resolve_source
from tests.conftest import git_env

ZGIT_SRC = str(Path(__file__).resolve().parent.parent)
SOURCE = "steps.model.Model"

# Each version has another size (the padding), so that an edit is visible to size and
# mtime alike whatever the file system's timestamp granularity.  HOLD_DIR makes the
# import wait until the test lets it go, holding a checkout open for as long as needed.
MODEL = '''\
import os
from zgit import BaseStep
from .helper import HELPER
# {pad}
_hold = os.environ.get("HOLD_DIR")
if _hold:
    with open(os.path.join(_hold, "ready"), "w") as _handle:
        _handle.write("ready\\n")
    with open(os.path.join(_hold, "go")) as _handle:
        _handle.read()

VERSION = {version}


class Model(BaseStep):
    VERSION = {version}

    def run(self, data):
        return (data or 0) + self.VERSION * 10 + HELPER
'''


def write_version(repo, version: int) -> None:
    repo.write("steps/__init__.py", "")
    repo.write("steps/model.py", MODEL.format(version=version, pad="x" * version))
    repo.write("steps/helper.py", f"HELPER = {version}  # {'y' * version}\n")
    repo.write("steps/plain.py", f"class Plain:\n    VERSION = {version}  # {'z' * version}\n")


def build(repo, n: int):
    repo.write(".gitignore", "__pycache__/\n*.pyc\n")
    shas = []
    for version in range(n):
        write_version(repo, version)
        shas.append(repo.commit(f"v{version}"))
    return shas


def import_model(repo):
    sys.path.insert(0, str(repo.path))
    from steps.model import Model

    return Model


def unpinned(obj, **kwargs):
    with pytest.warns(UnpinnedSourceWarning) as record:
        source = resolve_source(obj, **kwargs)
    assert source.kind == "unpinned"
    return source, " ".join(str(w.message) for w in record)


def pinned(obj, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnpinnedSourceWarning)
        return resolve_source(obj, **kwargs)


def child_env(**extra):
    env = git_env()
    env = {k: v for k, v in env.items() if not k.startswith("ZGIT_")}
    env["PYTHONPATH"] = ZGIT_SRC + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def run_py(code, cwd, **env):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=child_env(**env),
                          capture_output=True, text=True, timeout=120)


def _report(out):
    """The JSON line a child printed last, after checking it did not fail."""
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


# Resolve (and save) in a fresh process; prints what it got and every warning.
RESOLVE_IN_CHILD = '''\
import json, sys, warnings
sys.path.insert(0, {root!r})
{before}
from steps.model import Model
import zgit
{after}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    source = zgit.resolve_source(Model)
    pipeline = zgit.Pipeline("story")
    pipeline.add_step("model", Model())
    saved = pipeline.save().read_text()
print(json.dumps({{"version": Model.VERSION, "source": str(source), "saved": saved,
                  "warnings": [str(w.message) for w in caught]}}))
'''


# -- story 4: edited (and committed) after the import ----------------------------------------


def test_an_edit_committed_after_the_import_is_not_pinned(repo):
    build(repo, 1)
    cls = import_model(repo)
    write_version(repo, 1)
    head = repo.commit("edited after the import")
    source, message = unpinned(cls)
    assert source == Source.parse(SOURCE)
    assert head not in message
    assert "steps/model.py" in message and "changed on disk after" in message
    assert "re-import" in message and "restart" in message
    assert repo.status() == ""  # the directory is clean at the new HEAD: memory is what differs


def test_an_edit_of_an_imported_sibling_is_not_pinned(repo):
    build(repo, 1)
    cls = import_model(repo)  # imports steps/helper.py too
    repo.write("steps/helper.py", "HELPER = 100  # a longer line than before\n")
    repo.commit("helper edited after the import")
    _, message = unpinned(cls)
    assert "steps/helper.py" in message and "steps/model.py" not in message


def test_an_uncommitted_edit_still_names_the_dirty_files(repo):
    build(repo, 1)
    cls = import_model(repo)
    write_version(repo, 1)
    _, message = unpinned(cls)
    assert "uncommitted changes" in message and "steps/model.py" in message


def test_reading_the_edited_file_for_a_traceback_does_not_hide_the_edit(repo):
    """linecache, inspect and the user's own open() read the file as it is now; only the
    import system's reads are noted."""
    import inspect
    import linecache

    build(repo, 1)
    cls = import_model(repo)
    write_version(repo, 1)
    repo.commit("edited after the import")
    path = str(repo.path / "steps" / "model.py")
    linecache.checkcache(path)
    assert "VERSION = 1" in "".join(linecache.getlines(path))
    assert "VERSION = 1" in inspect.getsource(sys.modules["steps.model"])
    with open(path, "rb") as handle:
        handle.read()
    _, message = unpinned(cls)
    assert "steps/model.py" in message


def test_a_rewrite_with_the_same_bytes_after_a_save_still_pins(repo):
    """Writing a file again with the bytes it had (a script that regenerates files, a
    branch switched and back) gives it a new mtime: once a save has seen the file as it
    was imported, its bytes tell the two apart."""
    shas = build(repo, 1)
    cls = import_model(repo)
    assert pinned(cls).sha == shas[0]
    time.sleep(0.01)  # a coarse file-system clock must move on; not a timing assertion
    write_version(repo, 0)
    repo.write("steps/later.py", "LATER = 1\n")
    head = repo.commit("same bytes, and a new file")
    assert pinned(cls).sha == head
    repo.write("steps/helper.py", "HELPER = 0  # a real edit\n")
    repo.commit("an edit of an imported file")
    _, message = unpinned(cls)
    assert "steps/helper.py" in message


def test_the_standard_library_and_site_packages_are_not_noted():
    import json as stdlib_module

    import yaml as installed_module
    from zgit import imported

    noted = set(imported._stamps)
    assert stdlib_module.__file__ not in noted and installed_module.__file__ not in noted
    assert imported.changed_since_import(os.path.dirname(os.path.realpath(stdlib_module.__file__))) == []


def test_a_committed_file_that_was_never_imported_does_not_count(repo):
    shas = build(repo, 1)
    cls = import_model(repo)
    repo.write("steps/later.py", "LATER = 1\n")
    head = repo.commit("a module nobody has imported")
    assert head != shas[0]
    assert pinned(cls).sha == head


def test_a_class_rebound_by_a_reload_is_not_pinned(repo):
    """A step built before ``importlib.reload`` holds the old class: HEAD is not its code."""
    import importlib

    build(repo, 1)
    cls = import_model(repo)
    repo.write("steps/model.py", MODEL.format(version=1, pad="x"))  # model.py only: reloaded below
    head = repo.commit("edited")
    new = importlib.reload(sys.modules["steps.model"]).Model
    assert new.VERSION == 1 and cls.VERSION == 0
    assert pinned(new).sha == head
    _, message = unpinned(cls)
    assert "reload" in message


# -- story 3: a checkout killed after the import, then a new process imports from disk ------


@pytest.mark.parametrize("then", ["", "checkout", "memory"], ids=["save", "load-checkout-save", "load-memory-save"])
@pytest.mark.parametrize("zgit_first", [False, True], ids=["step-imports-zgit", "zgit-first"])
def test_a_checkout_left_by_a_killed_process_is_not_pinned_as_head(repo, zgit_first, then):
    """The next process imports the dead one's pinned files from disk; whatever it does
    next (a checkout load of its own recovers the dead one's journal first), HEAD is not
    the code it holds."""
    shas = build(repo, 2)
    out = run_py(f"import zgit; zgit.load_source('{SOURCE}@{shas[0]}', strategy='checkout')", repo.path,
                 ZGIT_TEST_KILL_AT="after-import")
    assert out.returncode == -signal.SIGKILL, out.stdout + out.stderr
    assert (repo.path / ".git" / "zgit" / "journal.json").exists()

    after = f"zgit.load_source('{SOURCE}@{shas[0]}', strategy={then!r})" if then else ""
    found = _report(run_py(RESOLVE_IN_CHILD.format(
        root=str(repo.path), before="import zgit" if zgit_first else "", after=after), repo.path))
    assert found["version"] == 0  # the class came from the pin's files the dead process left
    assert found["source"] == SOURCE  # not pinned: HEAD is version 1
    assert f"source: {SOURCE}\n" in found["saved"] and shas[1] not in found["saved"]
    assert any("steps/model.py" in w and "changed on disk after" in w for w in found["warnings"])
    # resolve recovered the dead process's checkout on its way
    assert repo.git("status", "--porcelain", "--untracked-files=all", "--", "steps") == ""
    assert not (repo.path / ".git" / "zgit" / "journal.json").exists()
    assert (repo.path / "steps/model.py").read_text() == MODEL.format(version=1, pad="x")


# -- another process's checkout is live while this one imports --------------------------------


def test_an_import_during_another_processes_checkout_is_not_pinned(repo, tmp_path):
    shas = build(repo, 2)
    hold = tmp_path / "hold"
    hold.mkdir()
    os.mkfifo(hold / "go")
    loader = subprocess.Popen(
        [sys.executable, "-c", f"import zgit; print(zgit.load_source('{SOURCE}@{shas[0]}', "
                               "strategy='checkout').VERSION)"],
        cwd=repo.path, env=child_env(HOLD_DIR=str(hold)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        deadline = time.monotonic() + 60  # a guard against a hang, not a timing assertion
        while not (hold / "ready").exists():
            assert loader.poll() is None, loader.communicate()
            assert time.monotonic() < deadline, "the loading process never reached its import"
            time.sleep(0.01)
        cls = import_model(repo)  # the other process has version 0 on disk right now
        assert cls.VERSION == 0
    finally:
        with open(hold / "go", "w") as go:  # lets the loader finish and restore HEAD
            go.write("go\n")
        out, err = loader.communicate(timeout=120)
    assert loader.returncode == 0, err
    assert out.strip() == "0"
    assert repo.status() == ""
    source, message = unpinned(cls)
    assert source == Source.parse(SOURCE)
    assert "steps/model.py" in message and "changed on disk after" in message


# -- no false refusal --------------------------------------------------------------------------


def test_import_save_run_pins_head(repo):
    shas = build(repo, 1)
    cls = import_model(repo)
    pipeline = Pipeline("plain")
    pipeline.add_step("model", cls())
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnpinnedSourceWarning)
        path = pipeline.save()
        assert pipeline.run(1) == {"model": 1}
    assert yaml.safe_load(path.read_text())["steps"]["model"]["source"] == f"{SOURCE}@{shas[0]}"


@pytest.mark.parametrize("strategy", ["checkout", "memory"])
def test_loading_an_older_pin_first_does_not_refuse_the_current_class(repo, strategy):
    shas = build(repo, 2)
    cls = import_model(repo)
    old = load_source(f"{SOURCE}@{shas[0]}", strategy=strategy)
    assert old.VERSION == 0 and cls.VERSION == 1
    assert pinned(cls).sha == shas[1]
    assert pinned(old).sha == shas[0]
    pipeline = Pipeline("current")
    pipeline.add_step("model", cls())
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnpinnedSourceWarning)
        path = pipeline.save()
    assert yaml.safe_load(path.read_text())["steps"]["model"]["source"] == f"{SOURCE}@{shas[1]}"


@pytest.mark.parametrize("strategy", ["checkout", "memory"])
def test_an_older_pin_loaded_in_another_process_between_import_and_save(repo, strategy):
    """Another process's checkout that ended before this one imported changes nothing here."""
    shas = build(repo, 2)
    out = run_py(f"import zgit; zgit.load_source('{SOURCE}@{shas[0]}', strategy={strategy!r})", repo.path)
    assert out.returncode == 0, out.stderr
    cls = import_model(repo)
    assert pinned(cls).sha == shas[1]


@pytest.mark.parametrize("bytecode", ["off", "on"])
@pytest.mark.parametrize("zgit_first", [False, True], ids=["step-imports-zgit", "zgit-first"])
def test_a_fresh_process_pins_head_with_bytecode_on_or_off(repo, bytecode, zgit_first):
    shas = build(repo, 2)
    env = {"PYTHONDONTWRITEBYTECODE": "1" if bytecode == "off" else None}
    code = RESOLVE_IN_CHILD.format(root=str(repo.path), before="import zgit" if zgit_first else "", after="")
    for _ in range(2):  # with bytecode on, the second process imports from __pycache__
        found = _report(run_py(code, repo.path, **env))
        assert found["source"] == f"{SOURCE}@{shas[1]}", found["warnings"]
        assert found["warnings"] == []
    assert (repo.path / "steps" / "__pycache__").exists() == (bytecode == "on")


def test_a_module_imported_before_zgit(repo):
    shas = build(repo, 1)
    code = f'''\
        import json, subprocess, sys, warnings
        sys.path.insert(0, {str(repo.path)!r})
        from steps.plain import Plain   # does not import zgit
        import zgit
        warnings.simplefilter("error", zgit.UnpinnedSourceWarning)
        first = str(zgit.resolve_source(Plain))
        with open("steps/plain.py", "a") as handle:
            handle.write("# edited after zgit was imported\\n")
        subprocess.run(["git", "commit", "-qam", "edit"], check=True)
        warnings.simplefilter("always")
        with warnings.catch_warnings(record=True) as caught:
            second = str(zgit.resolve_source(Plain))
        print(json.dumps({{"first": first, "second": second, "warnings": [str(w.message) for w in caught]}}))
        '''
    found = _report(run_py(code, repo.path))
    assert found["first"] == f"steps.plain.Plain@{shas[0]}"
    assert found["second"] == "steps.plain.Plain"
    assert any("steps/plain.py" in w for w in found["warnings"])


# -- the warning points at the user's call -----------------------------------------------------


def test_the_warning_points_at_the_users_call(repo):
    build(repo, 1)
    cls = import_model(repo)
    write_version(repo, 1)  # dirty
    pipeline = Pipeline("dirty")
    pipeline.add_step("model", cls())
    calls = {
        "resolve_source": lambda: resolve_source(cls),
        "resolve_source(str)": lambda: resolve_source(SOURCE),
        "to_config": lambda: pipeline.to_config(),
        "save": lambda: pipeline.save(),
        "run": lambda: pipeline.run(0),
    }
    for name, call in calls.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        found = [w for w in caught if issubclass(w.category, UnpinnedSourceWarning)]
        assert found, name
        for w in found:
            assert w.filename == __file__, (name, w.filename, w.lineno)


def test_loading_an_unpinned_source_warns_at_the_users_call(repo):
    build(repo, 1)
    sys.path.insert(0, str(repo.path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_source(SOURCE)
    found = [w for w in caught if issubclass(w.category, UnpinnedSourceWarning)]
    assert found and all(w.filename == __file__ for w in found)


# -- a class defined in a notebook cell ----------------------------------------------------


NOTEBOOK = '''\
import json, warnings
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
result = shell.run_cell("""
import warnings
import zgit
class CellStep(zgit.BaseStep):
    pass
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    pipeline = zgit.Pipeline("cell")
    pipeline.add_step("step", CellStep())
    saved = pipeline.save().read_text()
found = {"saved": saved, "warnings": [str(w.message) for w in caught],
         "files": [w.filename for w in caught]}
""")
result.raise_error()
print(json.dumps(shell.user_ns["found"]))
'''

EXEC_CELL = '''\
import json, sys, types, warnings
main = types.ModuleType("__main__")   # what a notebook's __main__ is: no __file__
sys.modules["__main__"] = main
exec(compile("""
import warnings
import zgit
class CellStep(zgit.BaseStep):
    pass
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    pipeline = zgit.Pipeline("cell")
    pipeline.add_step("step", CellStep())
    saved = pipeline.save().read_text()
found = {"saved": saved, "warnings": [str(w.message) for w in caught],
         "files": [w.filename for w in caught]}
""", "<cell>", "exec"), main.__dict__)
print(json.dumps(main.found))
'''


def _check_cell_message(message):
    assert "interactively" in message
    assert "no other process can load it" in message
    assert "module file inside a package directory" in message
    assert "has no file" not in message


@pytest.mark.parametrize("how", ["ipython", "exec"])
def test_a_class_defined_in_a_notebook_cell(repo, how):
    if how == "ipython":
        pytest.importorskip("IPython")
    build(repo, 1)
    found = _report(run_py(NOTEBOOK if how == "ipython" else EXEC_CELL, repo.path))
    assert "source: __main__.CellStep\n" in found["saved"]
    assert len(found["warnings"]) == 1
    _check_cell_message(found["warnings"][0])
    assert all("zgit" not in Path(f).parts for f in found["files"]), found["files"]

    from zgit.audit import audit_paths

    report = audit_paths([repo.path / "pipelines" / "cell.yaml"], repo=repo.path)
    findings = [f for file in report.files for step in file.steps for f in step.findings]
    assert [f.code for f in findings] == ["unpinned"]
    _check_cell_message(findings[0].message)
