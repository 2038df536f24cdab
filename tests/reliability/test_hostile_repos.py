"""Hostile repositories: what a pinned tree may hold, and sources that point elsewhere.

A symlink in a pinned tree that points outside the repository is reproduced as a symlink
and never followed for writing (not by the checkout, not by the restore, not by recover,
not by the bytecode clean-up); a submodule or a git-lfs pointer where code should be is a
clear ZgitError; a source never reaches outside the source root.
"""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import sys

import pytest

import zgit
from zgit import ConfigError, SourceNotFoundError, UnpinnedSourceWarning, ZgitError, load_source
from tests.reliability._util import Repo, run_py

pytestmark = pytest.mark.reliability

STRATEGIES = ["checkout", "memory"]


def tree_of(path):
    """Every file, directory and symlink below ``path``: what must never change."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, path)
            if os.path.islink(full):
                out[rel] = ("link", os.readlink(full))
            elif os.path.isdir(full):
                out[rel] = ("dir", None)
            else:
                with open(full, "rb") as handle:
                    out[rel] = ("file", handle.read(), os.stat(full).st_mode)
    return out


@pytest.fixture
def outside(tmp_path):
    """A directory outside the repository with things a symlink could lead zgit to."""
    root = tmp_path / "outside"
    (root / "dir").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "target.txt").write_text("precious, outside the repository\n")
    (root / "dir" / "target.txt").write_text("precious too\n")
    # Named like the bytecode zgit deletes for a module it replaces.
    (root / "dir" / "step.cpython-311.pyc").write_bytes(b"precious, not bytecode")
    (root / "dir" / f"step.{sys.implementation.cache_tag}.pyc").write_bytes(b"precious, not bytecode")
    (root / "dir" / "helper.anything.pyc").write_bytes(b"precious, not bytecode")
    return root


STEP = """\
import os

VERSION = {version!r}
LINK = os.readlink(os.path.join(os.getcwd(), "pkg", "mod", "escape")) if os.path.islink(
    os.path.join(os.getcwd(), "pkg", "mod", "escape")) else None


class Step:
    VERSION = VERSION
"""


def build_symlinks(repo: Repo, outside):
    repo.write(".gitignore", "__pycache__/\n")
    repo.write("pkg/__init__.py", "")
    repo.write("pkg/mod/__init__.py", "")
    repo.write("pkg/mod/step.py", STEP.format(version="pin"))
    repo.write("pkg/mod/helper.py", "H = 'pin'\n")
    repo.symlink("pkg/mod/escape", str(outside / "target.txt"))
    repo.symlink("pkg/mod/rel_escape", os.path.relpath(outside / "target.txt", repo.path / "pkg/mod"))
    repo.symlink("pkg/mod/dirlink", str(outside / "dir"))
    repo.symlink("pkg/mod/__pycache__", str(outside / "dir"))  # a cache directory that leads outside
    repo.git("add", "-f", "pkg/mod/__pycache__")
    pin = repo.commit("pin: symlinks that leave the repository")
    repo.git("rm", "-q", "--cached", "pkg/mod/__pycache__")
    os.unlink(repo.path / "pkg/mod/__pycache__")
    repo.write("pkg/mod/step.py", STEP.format(version="head"))
    repo.write("pkg/mod/helper.py", "H = 'head'\n")
    repo.write("pkg/mod/escape", "a plain file at HEAD\n")
    repo.remove("pkg/mod/rel_escape")
    os.unlink(repo.path / "pkg/mod/dirlink")
    repo.write("pkg/mod/dirlink/target.txt", "HEAD's own file, where the pin has a symlink\n")
    repo.commit("head: real files")
    return pin


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_symlinks_out_of_the_repository_are_never_followed_for_writing(repo, outside, strategy):
    pin = build_symlinks(repo, outside)
    before, outside_before = repo.state(), tree_of(outside)
    cls = load_source(f"pkg.mod.step.Step@{pin}", strategy=strategy)
    assert cls.VERSION == "pin"
    if strategy == "checkout":  # reproduced faithfully, as git would: a symlink, not its target
        assert sys.modules[cls.__module__].LINK == str(outside / "target.txt")
    assert tree_of(outside) == outside_before
    assert repo.state() == before


@pytest.mark.parametrize("point", ["after-materialize", "mid-restore"])
def test_recover_never_follows_a_symlink_out_of_the_repository(repo, outside, point):
    pin = build_symlinks(repo, outside)
    before, outside_before = repo.state(), tree_of(outside)
    out = run_py(f"import zgit; zgit.load_source('pkg.mod.step.Step@{pin}', strategy='checkout')",
                 repo.path, env={"ZGIT_TEST_KILL_AT": point})
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert zgit.recover(repo.path)
    assert tree_of(outside) == outside_before
    assert repo.state() == before


@pytest.mark.parametrize("populated", [False, True])
def test_module_directory_that_is_a_symlink_at_head_is_not_written_through(repo, outside, populated):
    repo.write("pkg/__init__.py", "")
    repo.write("pkg/mod/__init__.py", "")
    repo.write("pkg/mod/step.py", "class Step:\n    VERSION = 'pin'\n")
    pin = repo.commit("pin")
    repo.remove("pkg/mod")
    repo.symlink("pkg/mod", str(outside / ("dir" if populated else "empty")))
    repo.commit("head: the module directory became a symlink out of the repository")
    before, outside_before = repo.state(), tree_of(outside)
    with pytest.raises(ZgitError):
        load_source(f"pkg.mod.step.Step@{pin}", strategy="checkout")
    assert tree_of(outside) == outside_before
    assert repo.state() == before
    assert load_source(f"pkg.mod.step.Step@{pin}", strategy="memory").VERSION == "pin"


# -- submodules and git-lfs pointers -------------------------------------------------------


def add_gitlink(repo: Repo, path: str, sha: str) -> None:
    (repo.path / path).mkdir(parents=True, exist_ok=True)  # as a clone leaves it: empty
    repo.git("update-index", "--add", "--cacheinfo", f"160000,{sha},{path}")


def build_submodule(repo: Repo, imports_it: bool, keep_at_head: bool):
    repo.write(".gitignore", "__pycache__/\n")
    repo.write("pkg/__init__.py", "")
    repo.write("pkg/mod/__init__.py", "")
    base = repo.commit("base")
    body = "from .sub import thing\n" if imports_it else ""
    repo.write("pkg/mod/step.py", body + "class Step:\n    VERSION = 'pin'\n")
    repo.git("add", "pkg/mod/step.py")
    add_gitlink(repo, "pkg/mod/sub", base)
    pin = repo.commit_index("pin: a submodule inside the module directory")
    if not keep_at_head:
        repo.git("rm", "-q", "--cached", "pkg/mod/sub")
        (repo.path / "pkg/mod/sub").rmdir()
    repo.write("pkg/mod/step.py", "class Step:\n    VERSION = 'head'\n")
    repo.git("add", "pkg/mod/step.py")
    repo.commit_index("head")
    return pin


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_importing_from_a_submodule_is_a_clear_error(repo, strategy):
    pin = build_submodule(repo, imports_it=True, keep_at_head=True)
    before = repo.state()
    with pytest.raises(ZgitError, match="submodule"):
        load_source(f"pkg.mod.step.Step@{pin}", strategy=strategy)
    with pytest.raises(ZgitError, match="submodule"):
        load_source(f"pkg.mod.sub.thing.X@{pin}", strategy=strategy)
    assert repo.state() == before


def test_checkout_of_a_pin_whose_submodule_differs_from_head_is_a_clear_error(repo):
    pin = build_submodule(repo, imports_it=False, keep_at_head=False)
    before = repo.state()
    with pytest.raises(ZgitError, match="submodule"):
        load_source(f"pkg.mod.step.Step@{pin}", strategy="checkout")
    assert repo.state() == before
    assert not repo.journal.exists()
    # nothing is written by the memory strategy, and it does not need the submodule
    assert load_source(f"pkg.mod.step.Step@{pin}", strategy="memory").VERSION == "pin"


def test_a_submodule_that_is_the_same_at_pin_and_head_is_left_alone(repo):
    pin = build_submodule(repo, imports_it=False, keep_at_head=True)
    before = repo.state()
    assert load_source(f"pkg.mod.step.Step@{pin}", strategy="checkout").VERSION == "pin"
    assert repo.state() == before


LFS_POINTER = (b"version https://git-lfs.github.com/spec/v1\n"
               b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
               b"size 12345\n")


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("how", ["imported by the step", "named by the source"])
def test_a_git_lfs_pointer_where_code_should_be_is_a_clear_error(repo, strategy, how):
    repo.write(".gitignore", "__pycache__/\n")
    repo.write(".gitattributes", "pkg/mod/weights.py filter=lfs diff=lfs merge=lfs -text\n")
    repo.write("pkg/__init__.py", "")
    repo.write("pkg/mod/__init__.py", "")
    repo.write("pkg/mod/weights.py", LFS_POINTER)  # what a clone without git-lfs holds
    repo.write("pkg/mod/step.py", "from .weights import W\nclass Step:\n    VERSION = 'pin'\n")
    pin = repo.commit("pin")
    repo.write("pkg/mod/step.py", "class Step:\n    VERSION = 'head'\n")
    repo.commit("head")
    before = repo.state()
    source = f"pkg.mod.step.Step@{pin}" if how == "imported by the step" else f"pkg.mod.weights.W@{pin}"
    with pytest.raises(ZgitError, match="git-lfs"):
        load_source(source, strategy=strategy)
    assert repo.state() == before
    assert not repo.journal.exists()


# -- sources that point outside the source root ---------------------------------------------


def build_source_root(repo: Repo):
    repo.write(".zgit/config.yaml", "source_root: src\n")
    repo.write(".gitignore", "__pycache__/\n")
    for where in ("src/", "", "lib/"):
        repo.write(f"{where}pkg/__init__.py", "")
        repo.write(f"{where}pkg/mod/__init__.py", "")
        repo.write(f"{where}pkg/mod/step.py", f"class Step:\n    WHERE = {where or 'root'!r}\n")
    repo.write("lib/other/__init__.py", "")
    repo.write("lib/other/mod/__init__.py", "")
    repo.write("lib/other/mod/x.py", "class X:\n    pass\n")
    repo.symlink("src/escape", "../lib")
    return repo.commit("a source root with code outside it")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_sources_resolve_inside_the_source_root_only(repo, strategy):
    pin = build_source_root(repo)
    before = repo.state()
    assert load_source(f"pkg.mod.step.Step@{pin}", strategy=strategy).WHERE == "src/"
    for outside in (f"other.mod.x.X@{pin}", f"escape.other.mod.x.X@{pin}", f"lib.other.mod.x.X@{pin}",
                    f"src.pkg.mod.step.Step@{pin}"):
        with pytest.raises(SourceNotFoundError):
            load_source(outside, strategy=strategy)
    assert repo.state() == before


@pytest.mark.parametrize("root", ["..", "../elsewhere", "/etc", "src/../..", "/"])
def test_a_source_root_outside_the_repository_is_refused(repo, root):
    build_source_root(repo)
    repo.write(".zgit/config.yaml", f"source_root: {root!r}\n")
    pin = repo.commit("source root moved")
    with pytest.raises(ConfigError, match="source_root"):
        load_source(f"pkg.mod.step.Step@{pin}")


def test_a_class_outside_the_source_root_is_left_unpinned(repo):
    build_source_root(repo)
    sys.path.insert(0, str(repo.path / "lib"))
    from other.mod.x import X

    with pytest.warns(UnpinnedSourceWarning, match="source root"):
        source = zgit.resolve_source(X)
    assert source.pin is None


@pytest.mark.parametrize("name", [
    "pkg/../../etc@{sha}.passwd", "/etc@{sha}.passwd", "pkg.mod@{sha}/../../x", "pkg.mod@{sha}..x",
    "pkg.mod@{sha}.\x00", "pkg\\..\\..@{sha}.x",
])
def test_pinned_module_names_that_are_paths_are_not_found(repo, name):
    """Such names reach zgit's import hook by pickle or by hand; they name no git object."""
    pin = build_source_root(repo)
    with pytest.raises(ImportError):
        importlib.import_module(name.format(sha=pin))
    # and the same through pickle, which imports the module a class names
    payload = b"c" + name.format(sha=pin).encode() + b"\nStep\n."
    with pytest.raises((ImportError, pickle.UnpicklingError)):
        pickle.loads(payload)


# Figures for docs/guarantees.md: hostile repositories and names tried by this module.
HOSTILE_CASES = 2 + 2 + 2 + 2 + 1 + 1 + 4 + 2 + 5 + 1 + 6
