"""zgit's "clean" verdict on a module directory agrees with ``git status`` (the oracle).

For every git setting zgit honours (``core.autocrlf``, ``text``/``eol``/``text=auto``,
``ident``, clean filter drivers, ``core.fileMode``, ``core.symlinks``) and for
hypothesis-generated mixes of them with edits, renames, mode changes, CRLF/LF rewrites,
ignored and untracked files and committed bytecode, ``GitRepo.dirty_paths(dir)`` equals
the paths of ``git status --porcelain -z --untracked-files=all -- dir`` (bytecode left
out), before and after git refreshes the index's stat data.  The only documented
difference: files marked ``--assume-unchanged`` / ``--skip-worktree`` whose bytes differ,
which zgit counts (and says why) and git does not show.

The repositories are shared between generated cases: each case writes a fresh module
directory under its own settings, commits it, changes it, and compares.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.conftest import WorkTree, git_env
from zgit import Source, UnpinnedSourceWarning, resolve_source
from zgit.dirty import DirtyFile, describe
from zgit.gitrepo import is_bytecode_cache, open_repo

FILTER = "sed -e '/^#out/d'"  # an nbstripout-like clean filter: drops output lines
_counter = itertools.count()


def git(repo, *args: str, check: bool = True) -> str:
    """git in ``repo`` with the repository's own configuration in force (the suite's
    helper pins core.autocrlf=false for every command, which would hide the settings
    under test)."""
    result = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", *args],
        cwd=os.fspath(getattr(repo, "path", repo)), env=git_env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def commit(repo: WorkTree, message: str = "change") -> str:
    """``git add -A`` and commit, converting as the repository's settings say."""
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def git_dirty(repo: WorkTree, directory: str) -> List[str]:
    """``git status --porcelain -z --untracked-files=all -- dir``: the paths, bytecode left out."""
    out = git(repo.path, "status", "--porcelain", "-z", "--untracked-files=all", "--", directory)
    paths = set()
    items = out.split("\0")
    i = 0
    while i < len(items):
        item = items[i]
        i += 1
        if not item:
            continue
        code, path = item[:2], item[3:]
        paths.add(path)
        if "R" in code or "C" in code:
            paths.add(items[i])
            i += 1
    return sorted(p for p in paths if not is_bytecode_cache(p))


def zgit_dirty(repo: WorkTree, directory: str) -> List[str]:
    return open_repo(repo.path).dirty_paths(directory)


_config_now: Dict[str, Dict[str, Optional[str]]] = {}


def set_config(repo: WorkTree, **values: Optional[str]) -> None:
    """Set (None: unset) configuration values of ``repo``; values already so cost nothing."""
    now = _config_now.setdefault(str(repo.path), {})
    for key, value in values.items():
        if key in now and now[key] == value:
            continue
        now[key] = value
        if value is None:
            git(repo.path, "config", "--unset-all", key, check=False)
        else:
            git(repo.path, "config", key, value)


def age(paths: List[Path], seconds: int = 30) -> None:
    """Set files' mtimes into the past, so that the index written next records them as
    not racily clean (git, and zgit, then trust their stat data)."""
    then = time.time() - seconds
    for path in paths:
        if path.exists() and not path.is_symlink():
            os.utime(path, (then, then))


def assert_agrees(repo: WorkTree, directory: str) -> List[str]:
    """zgit's verdict equals git's, before git refreshes the index and after."""
    before = zgit_dirty(repo, directory)
    oracle = git_dirty(repo, directory)
    assert before == oracle, f"before git's refresh: zgit {before}, git {oracle}"
    after = zgit_dirty(repo, directory)  # git status may have rewritten the index
    assert after == oracle, f"after git's refresh: zgit {after}, git {oracle}"
    return oracle


# -- one setting at a time ----------------------------------------------------------------

LF = b"def f():\n    return 1\n"
CRLF = LF.replace(b"\n", b"\r\n")


def _setting_repo(make_repo: WorkTree, setting: str) -> WorkTree:
    """A repository whose module directory ``pkg/mod`` is committed under ``setting`` and
    then checked out again by git (CRLF files, expanded idents, a symlink as a plain
    file), plus what users then do (notebook outputs added and staged, an exec bit
    flipped): git status is clean, and so must zgit be."""
    repo = make_repo
    files: Dict[str, bytes] = {"pkg/mod/__init__.py": b"", "pkg/mod/step.py": LF}
    if setting == "autocrlf-true":
        set_config(repo, **{"core.autocrlf": "true"})
    elif setting == "autocrlf-input":
        set_config(repo, **{"core.autocrlf": "input"})
    elif setting == "eol-crlf":
        files["pkg/mod/.gitattributes"] = b"*.py text eol=crlf\n"
    elif setting == "text-auto":
        files["pkg/mod/.gitattributes"] = b"* text=auto\n"
        files["pkg/mod/step.py"] = CRLF  # stored with LF, checked out with LF
    elif setting == "ident":
        files["pkg/mod/.gitattributes"] = b"*.py ident\n"
        files["pkg/mod/step.py"] = b"# $Id$\n" + LF
    elif setting == "filter":
        set_config(repo, **{"filter.strip.clean": FILTER, "filter.strip.smudge": "cat"})
        files["pkg/mod/.gitattributes"] = b"*.py filter=strip\n"
    elif setting == "filemode-false":
        set_config(repo, **{"core.fileMode": "false"})
    elif setting == "encoding":
        files["pkg/mod/.gitattributes"] = b"*.txt working-tree-encoding=UTF-16\n"
        files["pkg/mod/notes.txt"] = "h\u00e9llo\n".encode("utf-16")
    for path, data in files.items():
        repo.write(path, data)
    if setting == "symlinks-false":
        os.symlink("step.py", repo.path / "pkg/mod/link.py")
    commit(repo, "the module directory")
    if setting == "symlinks-false":
        set_config(repo, **{"core.symlinks": "false"})
    # git checks the directory out again, converting as the setting says
    for path in (repo.path / "pkg/mod").iterdir():
        path.unlink()
    git(repo, "checkout", "--", "pkg/mod")
    if setting == "filter":
        repo.write("pkg/mod/step.py", LF + b"#out: 42\n")  # a run adds output ...
        git(repo, "add", "pkg/mod/step.py")  # ... which the filter keeps out of git
    elif setting == "filemode-false":
        (repo.path / "pkg/mod/step.py").chmod(0o755)
    return repo


SETTINGS = ["autocrlf-true", "autocrlf-input", "eol-crlf", "text-auto", "ident", "filter",
            "filemode-false", "symlinks-false", "encoding"]


@pytest.mark.parametrize("setting", SETTINGS)
def test_each_setting_clean_as_git_says(make_repo, setting):
    repo = _setting_repo(make_repo, setting)
    assert git_dirty(repo, "pkg/mod") == []
    assert assert_agrees(repo, "pkg/mod") == []
    for path in (repo.path / "pkg/mod").iterdir():  # no stat cache: contents compared
        path.write_bytes(path.read_bytes())
    assert assert_agrees(repo, "pkg/mod") == []
    # and a real edit is still seen, under every setting
    path = repo.path / "pkg/mod/step.py"
    path.write_bytes(path.read_bytes() + b"x = 2\n")
    assert assert_agrees(repo, "pkg/mod") == ["pkg/mod/step.py"]


@pytest.mark.parametrize("setting", ["autocrlf-true", "eol-crlf", "filter", "filemode-false"])
def test_pin_at_head_under_setting(make_repo, monkeypatch, setting):
    repo = _setting_repo(make_repo, setting)
    repo.write("pkg/__init__.py", "")
    commit(repo, "package")
    monkeypatch.syspath_prepend(str(repo.path))
    from pkg.mod.step import f

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        source = resolve_source(f, repo=repo.path)
    assert source == Source("pkg.mod.step", "f", git(repo, "rev-parse", "HEAD").strip())


def test_file_committed_with_crlf_is_not_converted(make_repo):
    """git's "safer autocrlf": a file whose indexed blob has CRLF stays as it is."""
    repo = make_repo
    repo.write("pkg/mod/step.py", CRLF)
    commit(repo, "committed with CRLF, autocrlf off")
    set_config(repo, **{"core.autocrlf": "true"})
    repo.write("pkg/mod/step.py", CRLF)  # rewritten: not in the stat cache any more
    assert assert_agrees(repo, "pkg/mod") == []
    repo.write("pkg/mod/step.py", LF)
    assert assert_agrees(repo, "pkg/mod") == ["pkg/mod/step.py"]


def test_required_filter_that_fails_counts_and_says_so(make_repo):
    repo = make_repo
    set_config(repo, **{"filter.strip.clean": FILTER, "filter.strip.required": "true"})
    repo.write("pkg/mod/.gitattributes", "*.py filter=strip\n")
    repo.write("pkg/mod/step.py", LF)
    commit(repo)
    set_config(repo, **{"filter.strip.clean": "exit 3"})
    repo.write("pkg/mod/step.py", LF)  # touched
    files = open_repo(repo.path).dirty_files("pkg/mod")
    assert files == [DirtyFile("pkg/mod/step.py", "filter-error")]
    assert "clean filter failed" in describe(files)


# -- stricter than git, and submodules ---------------------------------------------------


@pytest.mark.parametrize("flag, reason", [("--assume-unchanged", "assume-unchanged"),
                                          ("--skip-worktree", "skip-worktree")])
def test_files_git_looks_away_from_count_with_their_reason(make_repo, flag, reason):
    repo = make_repo
    repo.write("pkg/mod/step.py", LF)
    repo.write("pkg/mod/other.py", LF)
    commit(repo)
    git(repo, "update-index", flag, "pkg/mod/step.py", "pkg/mod/other.py")
    repo.write("pkg/mod/step.py", LF + b"x = 2\n")  # other.py keeps HEAD's bytes
    assert git_dirty(repo, "pkg/mod") == []  # git looks away ...
    files = open_repo(repo.path).dirty_files("pkg/mod")
    assert files == [DirtyFile("pkg/mod/step.py", reason)]  # ... zgit does not
    assert files[0].stricter_than_git
    assert reason in describe(files)


def test_module_directory_in_a_submodule_gets_the_submodule_reason(make_repo, tmp_path):
    inner = WorkTree(tmp_path / "inner")
    inner.write("pkg/mod/step.py", LF)
    commit(inner, "inner")
    repo = make_repo
    repo.write("README", "top\n")
    commit(repo)
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(inner.path), "sub")
    commit(repo, "with a submodule")
    files = open_repo(repo.path).dirty_files("sub/pkg/mod")
    assert files == [DirtyFile("sub", "submodule")]
    assert open_repo(repo.path).dirty_paths("sub/pkg/mod") == ["sub"]


def test_tracked_files_in_an_ignored_directory_are_compared(make_repo):
    repo = make_repo
    repo.write(".gitignore", "build/\n*.log\n")
    repo.write("pkg/mod/build/keep.py", LF)
    git(repo, "add", "-f", "pkg/mod/build/keep.py")
    commit(repo)
    repo.write("pkg/mod/build/other.py", LF)  # ignored, untracked
    repo.write("pkg/mod/x.log", "log\n")
    assert assert_agrees(repo, "pkg/mod") == []
    repo.write("pkg/mod/build/keep.py", LF + b"y = 1\n")
    assert assert_agrees(repo, "pkg/mod") == ["pkg/mod/build/keep.py"]


def test_committed_bytecode_never_counts(make_repo):
    repo = make_repo
    repo.write("pkg/mod/step.py", LF)
    repo.write("pkg/mod/__pycache__/step.cpython-311.pyc", b"\x00old")
    repo.write("pkg/mod/legacy.pyc", b"\x00old")
    commit(repo, "bytecode committed by git add -A")
    repo.write("pkg/mod/__pycache__/step.cpython-311.pyc", b"\x00new")
    (repo.path / "pkg/mod/legacy.pyc").unlink()
    repo.write("pkg/mod/__pycache__/new.cpython-311.pyc", b"\x00")
    assert zgit_dirty(repo, "pkg/mod") == []


# -- racy git -----------------------------------------------------------------------------


def test_racy_rewrite_of_the_same_size_is_seen(make_repo):
    """A file rewritten with other bytes of the same size in the same second as the index
    was written has the stat data the index recorded (mtime to the second, size): it
    must still be hashed, as git does with racily clean entries."""
    repo = make_repo
    repo.write("pkg/mod/step.py", "value = 1\n")
    commit(repo)
    index = repo.path / ".git" / "index"
    stamp = os.stat(index)
    path = repo.path / "pkg/mod/step.py"
    path.write_text("value = 2\n")
    # the same mtime (to the nanosecond) and size as the index recorded, within the
    # index's own second
    os.utime(path, ns=(stamp.st_mtime_ns, stamp.st_mtime_ns))
    assert open_repo(repo.path).dirty_paths("pkg/mod") == ["pkg/mod/step.py"]
    assert git_dirty(repo, "pkg/mod") == ["pkg/mod/step.py"]


def test_stat_cache_is_trusted_as_git_trusts_it(make_repo):
    """A file whose stat data match its (not racily clean) index entry is not read: with
    core.trustCtime=false, other bytes of the same size under the recorded mtime are
    "clean" for git, and for zgit too (that is what a stat cache is)."""
    repo = make_repo
    set_config(repo, **{"core.trustCtime": "false"})
    path = repo.path / "pkg/mod/step.py"
    repo.write("pkg/mod/step.py", "value = 1\n")
    age([path])
    commit(repo)
    recorded = os.stat(path)
    time.sleep(1.05 - time.time() % 1)  # a ctime in another second (git may compare seconds only)
    path.write_text("value = 2\n")
    os.utime(path, ns=(recorded.st_atime_ns, recorded.st_mtime_ns))
    assert os.stat(path).st_ino == recorded.st_ino
    assert git_dirty(repo, "pkg/mod") == []
    assert zgit_dirty(repo, "pkg/mod") == []
    # and trusting ctime again (git's default) finds it, since writing changed the ctime
    set_config(repo, **{"core.trustCtime": None})
    assert zgit_dirty(repo, "pkg/mod") == ["pkg/mod/step.py"]
    assert git_dirty(repo, "pkg/mod") == ["pkg/mod/step.py"]


def test_message_names_the_reason(make_repo, monkeypatch):
    repo = make_repo
    repo.write("pkg/__init__.py", "")
    repo.write("pkg/mod/__init__.py", "")
    repo.write("pkg/mod/step.py", LF)
    commit(repo)
    git(repo, "update-index", "--assume-unchanged", "pkg/mod/step.py")
    repo.write("pkg/mod/step.py", LF + b"x = 3\n")
    monkeypatch.syspath_prepend(str(repo.path))
    from pkg.mod.step import f

    with pytest.warns(UnpinnedSourceWarning) as record:
        source = resolve_source(f, repo=repo.path)
    assert source.kind == "unpinned"
    message = str(record[0].message)
    assert "pkg/mod/step.py" in message and "assume-unchanged" in message
    assert "stricter than git status" in message


# -- generated mixes ----------------------------------------------------------------------

_CONTENTS = {
    "lf": b"a = 1\nb = 2\n",
    "crlf": b"a = 1\r\nb = 2\r\n",
    "mixed": b"a = 1\r\nb = 2\n",
    "lonecr": b"a = 1\rb = 2\n",
    "binary": b"\x00\x01\x02\r\n\xff",
    "ident": b"# $Id$\nc = 3\n",
    "output": b"d = 4\n#out: 5\n",
    "empty": b"",
}
_NAMES = ["step.py", "helper.py", "notes.txt", "data.bin", "tool.id", "nb.nb", "deep/sub.py"]
_ATTRIBUTES = ["*.txt text", "*.txt eol=crlf", "*.py text=auto", "*.py eol=lf", "*.py eol=crlf",
               "*.id ident", "*.nb filter=strip", "*.bin -text", "* text=auto", "*.txt -text",
               "*.py ident", "*.py text"]
_OPS = ["edit", "crlf", "lf", "touch", "chmod", "delete", "rename", "untracked", "ignored",
        "pycache", "expand-ident", "add-output", "same-size"]


@st.composite
def scenarios(draw):
    files = draw(st.dictionaries(st.sampled_from(_NAMES), st.sampled_from(sorted(_CONTENTS)), min_size=1, max_size=5))
    return {
        "files": files,
        "executable": draw(st.sets(st.sampled_from(sorted(files)))),
        "autocrlf": draw(st.sampled_from([None, "true", "input", "false"])),
        "filemode": draw(st.sampled_from([None, "false"])),
        "attributes": draw(st.lists(st.sampled_from(_ATTRIBUTES), max_size=3, unique=True)),
        "filter": draw(st.booleans()),
        "aged": draw(st.booleans()),
        "autocrlf_after": draw(st.sampled_from([None, "true", "input"])),
        "pycache": draw(st.booleans()),
        "ops": draw(st.lists(st.tuples(st.sampled_from(_OPS), st.integers(0, 10)), max_size=5)),
    }


@pytest.fixture(scope="module")
def shared_repo(tmp_path_factory):
    repo = WorkTree(tmp_path_factory.mktemp("differential") / "repo")
    repo.write("README", "shared\n")
    commit(repo, "base")
    return repo


def _apply(repo: WorkTree, directory: str, op: str, pick: int, names: List[str]) -> None:
    root = repo.path / directory
    present = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts and p.name not in (".gitignore", ".gitattributes"))
    target = root / present[pick % len(present)] if present else None
    if op == "untracked":
        (root / f"new{pick}.py").write_bytes(b"new = 1\n")
    elif op == "ignored":
        (root / f"run{pick}.log").write_bytes(b"ignored\n")
        (root / "build").mkdir(exist_ok=True)
        (root / "build" / "out.py").write_bytes(b"ignored too\n")
    elif op == "pycache":
        cache = root / "__pycache__"
        cache.mkdir(exist_ok=True)
        (cache / f"m{pick}.cpython-311.pyc").write_bytes(b"\x00\x01")
    elif target is None:
        return
    elif op == "edit":
        target.write_bytes(target.read_bytes() + b"e = %d\n" % pick)
    elif op == "crlf":
        target.write_bytes(target.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    elif op == "lf":
        target.write_bytes(target.read_bytes().replace(b"\r\n", b"\n"))
    elif op == "touch":
        target.write_bytes(target.read_bytes())
    elif op == "chmod":
        target.chmod(target.stat().st_mode ^ 0o111)
    elif op == "delete":
        target.unlink()
    elif op == "rename":
        target.rename(target.with_name("renamed_" + target.name))
    elif op == "expand-ident":
        target.write_bytes(target.read_bytes().replace(b"$Id$", b"$Id: " + b"0" * 40 + b" $"))
    elif op == "add-output":
        target.write_bytes(target.read_bytes() + b"#out: more\n")
    elif op == "same-size":
        data = bytearray(target.read_bytes())
        if data:
            data[pick % len(data)] ^= 0x01
            target.write_bytes(bytes(data))


def _generated_case(repo: WorkTree, case: dict) -> List[str]:
    """One generated case: a fresh module directory written and committed under the
    case's settings, changed by its operations, and judged by zgit and git."""
    directory = f"m{next(_counter)}"
    set_config(repo, **{
        "core.autocrlf": case["autocrlf"],
        "core.fileMode": case["filemode"],
        "filter.strip.clean": FILTER if case["filter"] else None,
    })
    root = repo.path / directory
    root.mkdir()
    (root / ".gitignore").write_bytes(b"*.log\nbuild/\n")
    if case["attributes"]:
        (root / ".gitattributes").write_bytes("\n".join(case["attributes"]).encode() + b"\n")
    written = []
    for name, kind in case["files"].items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_CONTENTS[kind])
        if name in case["executable"]:
            path.chmod(0o755)
        written.append(path)
    if case["pycache"]:
        (root / "__pycache__").mkdir()
        (root / "__pycache__" / "step.cpython-311.pyc").write_bytes(b"\x00committed")
    if case["aged"]:
        age(written + [root / ".gitignore", root / ".gitattributes"])
    git(repo.path, "add", "-A", "--", directory)
    git(repo.path, "commit", "-q", "-m", directory)
    if case["aged"] and case["autocrlf_after"]:
        # settings changed after the commit: git trusts its stat cache for untouched files
        set_config(repo, **{"core.autocrlf": case["autocrlf_after"]})
    names = sorted(case["files"])
    for op, pick in case["ops"]:
        _apply(repo, directory, op, pick, names)
    return assert_agrees(repo, directory)


def test_generated_mixes_agree_with_git(shared_repo):
    """At least 200 generated cases, zgit and git agreeing on every one; both verdicts
    (clean and dirty) among them."""
    verdicts: List[bool] = []

    @settings(max_examples=210, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(case=scenarios())
    def agree(case):
        verdicts.append(bool(_generated_case(shared_repo, case)))

    agree()
    assert len(verdicts) >= 200
    assert 0 < sum(verdicts) < len(verdicts)


def test_checkout_load_refuses_a_marked_file_and_says_why(repo):
    """The checkout loader refuses a module directory whose --assume-unchanged file was
    edited (git status is clean), names the mark, and leaves the tree as it was."""
    from tests._project import SOURCE, build_history
    from zgit import DirtyModuleError, load_source

    shas = build_history(repo, 2)
    helper = "trainers/my_awesome_trainer/helper.py"
    git(repo, "update-index", "--assume-unchanged", helper)
    repo.write(helper, "HELPER_VERSION = 'edited'\n")
    def status() -> List[str]:  # bytecode the import may write (PYTHONDONTWRITEBYTECODE unset) aside
        lines = git(repo, "status", "--porcelain", "--untracked-files=all").splitlines()
        return [line for line in lines if not is_bytecode_cache(line[3:])]

    before, status_before = repo.snapshot(), status()
    assert status_before == []
    with pytest.raises(DirtyModuleError) as info:
        load_source(f"{SOURCE}@{shas[0]}", strategy="checkout")
    assert info.value.paths == [helper]
    assert "assume-unchanged" in str(info.value) and "stricter than git status" in str(info.value)
    assert repo.snapshot() == before
    assert status() == status_before


@pytest.mark.parametrize("link", ["pkg/mod", "pkg"], ids=["module-directory", "its-parent"])
def test_a_module_directory_reached_through_a_symlink_is_not_clean(make_repo, tmp_path, link):
    """git never follows a symlink to a directory: with the module directory (or a parent)
    moved elsewhere and linked back, git sees its files deleted, however equal their bytes.
    So does zgit; and a checkout load refuses it rather than write through the link."""
    from zgit import DirtyModuleError
    from zgit.loader import load_source

    repo = make_repo
    repo.write("pkg/__init__.py", "")
    repo.write("pkg/mod/__init__.py", "")
    repo.write("pkg/mod/step.py", "class Step:\n    version = 1\n")
    first = commit(repo, "v1")
    repo.write("pkg/mod/step.py", "class Step:\n    version = 2\n")
    commit(repo, "v2")
    moved = tmp_path / "elsewhere"
    os.rename(repo.path / link, moved)
    os.symlink(moved, repo.path / link)
    assert assert_agrees(repo, "pkg/mod") == sorted(["pkg/mod/__init__.py", "pkg/mod/step.py"] + (
        ["pkg/mod"] if link == "pkg/mod" else []))
    outside = {p.name: p.read_bytes() for p in (moved / ("" if link == "pkg/mod" else "mod")).iterdir()}
    with pytest.raises(DirtyModuleError):
        load_source(f"pkg.mod.step.Step@{first}", repo=repo.path, strategy="checkout")
    assert {p.name: p.read_bytes() for p in (moved / ("" if link == "pkg/mod" else "mod")).iterdir()} == outside
