"""A checkout load writes what ``git checkout <sha> -- <dir>`` would write (line endings,
``ident``, smudge filters) and gives the work tree back byte for byte, with the settings
users have: ``core.autocrlf``, ``eol=crlf``, a clean/smudge filter, ``core.fileMode=false``.

git itself is the oracle: ``git cat-file --filters`` shows what a checkout writes, and
``git status`` what git thinks of the tree.  These repositories are driven without the
suite's ``-c core.autocrlf=false`` so that their own configuration counts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import zgit
from zgit import ZgitError, load_source, resolve_source
from tests.conftest import git_env, is_bytecode
from tests.test_checkout_restore import diff_index_quiet, identity, settle_index

MODULE_DIR = "pkg/mod"

# The module reads its data files from disk while it imports: what the checkout wrote.
STEP = '''\
import os
HERE = os.path.join(os.getcwd(), "pkg", "mod")
SEEN = {{}}
for _name in sorted(os.listdir(HERE)):
    if _name.endswith(".txt"):
        with open(os.path.join(HERE, _name), "rb") as _handle:
            SEEN[_name] = _handle.read()
VERSION = {version}


class Step:
    VERSION = {version}
'''


def run_git(repo: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run(["git", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", *args],
                          cwd=repo, env=git_env(), capture_output=True)
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)}: {done.stderr.decode()}")
    return done.stdout.decode("latin-1")


def git_status(repo: Path) -> str:
    """``git status --porcelain`` without bytecode caches (they never count)."""
    out = run_git(repo, "status", "--porcelain", "--untracked-files=all")
    return "".join(line + "\n" for line in out.splitlines() if not is_bytecode(line[3:]))


def write(repo: Path, relpath: str, data: bytes, mode: int = 0o644) -> None:
    full = repo / relpath
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_bytes(data)
    full.chmod(mode)


def commit(repo: Path, message: str) -> str:
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-q", "-m", message)
    return run_git(repo, "rev-parse", "HEAD").strip()


def checkout_bytes(repo: Path, sha: str, path: str) -> bytes:
    """What ``git checkout`` writes for ``path`` at ``sha`` (smudge and eol applied)."""
    return subprocess.run(["git", "cat-file", "--filters", f"{sha}:{path}"], cwd=repo, env=git_env(),
                          capture_output=True, check=True).stdout


@pytest.fixture
def project(tmp_path, monkeypatch):
    path = tmp_path / "project"
    path.mkdir()
    run_git(path, "init", "-q")
    monkeypatch.chdir(path)
    return path


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def _history(repo: Path, encode, extra=None):
    """pin (VERSION 0) and HEAD (VERSION 1), the work tree as git would have written it."""
    shas = []
    for version in range(2):
        write(repo, "pkg/__init__.py", b"")
        write(repo, f"{MODULE_DIR}/__init__.py", b"")
        write(repo, f"{MODULE_DIR}/step.py", encode(STEP.format(version=version)))
        write(repo, f"{MODULE_DIR}/data.txt", encode(f"data {version}\nline two\n"))
        if extra is not None:
            extra(repo, version)
        shas.append(commit(repo, f"v{version}"))
    return shas


def setting_autocrlf(repo):
    run_git(repo, "config", "core.autocrlf", "true")
    return _history(repo, crlf)


def setting_eol_crlf(repo):
    write(repo, ".gitattributes", b"*.py text eol=crlf\n*.txt text eol=crlf\n")
    return _history(repo, crlf)


def setting_filter(repo):
    # nbstripout-style: the work tree holds more than the object database.
    run_git(repo, "config", "filter.stamp.smudge", "sed -e 's/@STAMP@/stamped by smudge/'")
    run_git(repo, "config", "filter.stamp.clean", "sed -e 's/stamped by smudge/@STAMP@/'")
    write(repo, ".gitattributes", b"*.txt filter=stamp\n")
    return _history(repo, lambda text: text.replace("line two", "stamped by smudge").encode())


def setting_filemode(repo):
    run_git(repo, "config", "core.fileMode", "false")

    def tool(repo, version):
        write(repo, f"{MODULE_DIR}/tool.sh", f"#!/bin/sh\necho {version}\n".encode(), 0o644)

    shas = _history(repo, str.encode, tool)
    (repo / MODULE_DIR / "tool.sh").chmod(0o755)  # the exec bit git is told not to see
    return shas


SETTINGS = {
    "autocrlf": setting_autocrlf,
    "eol-crlf": setting_eol_crlf,
    "clean-smudge-filter": setting_filter,
    "filemode-false": setting_filemode,
}


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_each_setting_pins_loads_and_gives_the_tree_back(project, setting):
    pin, head = SETTINGS[setting](project)
    assert git_status(project) == ""  # git: clean
    settle_index(project)
    sys.path.insert(0, str(project))
    import importlib

    working = importlib.import_module("pkg.mod.step")  # writes its bytecode, as users' imports do
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_source(working.Step).sha == head  # pin at HEAD works
    # What the load must give back: the tree as it is just before it, bytecode included.
    before, index = identity(project, MODULE_DIR), run_git(project, "ls-files", "-s")
    cls = load_source(f"pkg.mod.step.Step@{pin}", strategy="checkout")
    assert cls.VERSION == 0
    seen = sys.modules[cls.__module__].SEEN
    assert seen["data.txt"] == checkout_bytes(project, pin, f"{MODULE_DIR}/data.txt")
    assert diff_index_quiet(project) == 0  # before git status, which would refresh the index
    assert identity(project, MODULE_DIR) == before  # byte-identical, mtime and inode too
    assert git_status(project) == ""
    assert run_git(project, "ls-files", "-s") == index


# -- what the checkout writes, for files only the pin has (no clean check involved) ---------


def _pin_only_files(repo: Path, attributes: bytes, files: dict):
    """pin: the module plus ``files``; HEAD: without them.  Attributes at the root."""
    write(repo, ".gitattributes", attributes)
    write(repo, "pkg/__init__.py", b"")
    write(repo, f"{MODULE_DIR}/__init__.py", b"")
    write(repo, f"{MODULE_DIR}/step.py", STEP.format(version=0).encode())
    for name, data in files.items():
        write(repo, f"{MODULE_DIR}/{name}", data)
    pin = commit(repo, "pin")
    for name in files:
        (repo / MODULE_DIR / name).unlink()
    write(repo, f"{MODULE_DIR}/step.py", STEP.format(version=1).encode())
    commit(repo, "head")
    return pin


def test_pinned_files_are_written_as_git_checkout_writes_them(project):
    run_git(project, "config", "filter.stamp.smudge", "sed -e 's|@STAMP@|stamped by smudge %f|'")
    run_git(project, "config", "filter.stamp.clean", "cat")
    pin = _pin_only_files(project, (
        b"crlf.txt text eol=crlf\n"
        b"ident.txt ident\n"
        b"filtered.txt filter=stamp\n"
        b"binary.txt -text\n"
    ), {
        "crlf.txt": b"one\ntwo\n",
        "ident.txt": b"version $Id$\n",
        "filtered.txt": b"@STAMP@\n",
        "binary.txt": b"raw\nbytes\0\n",
    })
    before = identity(project, MODULE_DIR)
    status = git_status(project)
    cls = load_source(f"pkg.mod.step.Step@{pin}", strategy="checkout")
    seen = sys.modules[cls.__module__].SEEN
    for name in ("crlf.txt", "ident.txt", "filtered.txt", "binary.txt"):
        assert seen[name] == checkout_bytes(project, pin, f"{MODULE_DIR}/{name}"), name
    assert seen["crlf.txt"] == b"one\r\ntwo\r\n"
    assert seen["filtered.txt"] == b"stamped by smudge pkg/mod/filtered.txt\n"
    assert identity(project, MODULE_DIR) == before
    assert git_status(project) == status


def test_a_failing_smudge_filter(project):
    """Not required: the blob is written unfiltered, as git does, with a warning.
    Required: the load fails clearly before the import, and the tree is as before."""
    run_git(project, "config", "filter.broken.smudge", "exit 3")
    pin = _pin_only_files(project, b"filtered.txt filter=broken\n", {"filtered.txt": b"@STAMP@\n"})
    before = identity(project, MODULE_DIR)
    cls = load_source(f"pkg.mod.step.Step@{pin}", strategy="checkout")
    assert sys.modules[cls.__module__].SEEN["filtered.txt"] == b"@STAMP@\n"
    assert identity(project, MODULE_DIR) == before
    zgit.loader.forget_loaded()
    run_git(project, "config", "filter.broken.required", "true")
    with pytest.raises(ZgitError, match="broken"):
        load_source(f"pkg.mod.step.Step@{pin}", strategy="checkout")
    assert identity(project, MODULE_DIR) == before
    assert not (project / ".git" / "zgit" / "journal.json").exists()


def test_an_untracked_gitattributes_below_the_module_directory_applies_too(project):
    """git reads a ``.gitattributes`` of the work tree whether or not it is tracked (here
    ignored, so the module directory counts as clean): a checkout writes what git would,
    even where no tracked attributes file exists anywhere."""
    step = STEP.replace('"pkg", "mod")', '"pkg", "mod", "sub")')
    write(project, ".gitignore", b".gitattributes\n")
    write(project, "pkg/__init__.py", b"")
    write(project, f"{MODULE_DIR}/__init__.py", b"")
    write(project, f"{MODULE_DIR}/step.py", step.format(version=0).encode())
    write(project, f"{MODULE_DIR}/sub/keep.txt", b"kept\n")
    write(project, f"{MODULE_DIR}/sub/ident.txt", b"version $Id$\n")
    pin = commit(project, "pin")
    blob = run_git(project, "rev-parse", f"{pin}:{MODULE_DIR}/sub/ident.txt").strip()
    (project / MODULE_DIR / "sub" / "ident.txt").unlink()
    write(project, f"{MODULE_DIR}/step.py", step.format(version=1).encode())
    commit(project, "head")
    write(project, f"{MODULE_DIR}/sub/.gitattributes", b"*.txt ident\n")
    status = git_status(project)
    cls = load_source(f"pkg.mod.step.Step@{pin}", strategy="checkout")
    assert sys.modules[cls.__module__].SEEN["ident.txt"] == f"version $Id: {blob} $\n".encode()
    assert git_status(project) == status


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_pinned_files_get_the_permissions_git_checkout_gives_them(project, umask):
    """git creates a file 0666 (0777 when executable) less the umask: so does the checkout,
    also where the umask is 002 (Debian's for users with their own group) or 077."""
    step = STEP.replace("SEEN[_name] = _handle.read()", "SEEN[_name] = os.stat(os.path.join(HERE, _name)).st_mode & 0o777")
    write(project, "pkg/__init__.py", b"")
    write(project, f"{MODULE_DIR}/__init__.py", b"")
    write(project, f"{MODULE_DIR}/step.py", step.format(version=0).encode())
    write(project, f"{MODULE_DIR}/plain.txt", b"plain\n")
    write(project, f"{MODULE_DIR}/tool.txt", b"#!/bin/sh\n", mode=0o755)
    pin = commit(project, "pin")
    (project / MODULE_DIR / "plain.txt").unlink()
    (project / MODULE_DIR / "tool.txt").unlink()
    write(project, f"{MODULE_DIR}/step.py", step.format(version=1).encode())
    commit(project, "head")
    previous = os.umask(umask)
    try:
        cls = load_source(f"pkg.mod.step.Step@{pin}", strategy="checkout")
    finally:
        os.umask(previous)
    seen = sys.modules[cls.__module__].SEEN
    assert seen == {"plain.txt": 0o666 & ~umask, "tool.txt": 0o777 & ~umask}
