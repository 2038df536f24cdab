"""The module directory cannot be written: permission denied, file too large, disk full.

Each time the load fails with a :class:`ZgitError` that says what went wrong, and the tree
is exactly as before (git status, index, bytes and modes of every file), with no journal
left behind.  Mechanisms are real, never mocked: ``chattr +i`` (which stops root too) or
``chmod`` for other users, ``RLIMIT_FSIZE`` (the kernel refuses writes past a size with
EFBIG, root or not), and a tiny tmpfs that really fills up (ENOSPC), where mounting is
allowed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

import zgit
from zgit import ZgitError, load_source
from tests.reliability._util import Repo, run_py

pytestmark = pytest.mark.reliability

BIG = 256 * 1024
STEP = "pkg.mod.step.Step"

STEP_CODE = '''\
import os

VERSION = {version!r}
FILL = os.environ.get("RELIABILITY_FILL")
if FILL:  # the pinned code itself fills the disk while it imports (a cache, a download)
    with open(FILL, "ab") as handle:
        try:
            while True:
                handle.write(b"x" * 65536)
                handle.flush()
        except OSError:
            pass
FREEZE = os.environ.get("RELIABILITY_FREEZE")
if FREEZE:  # the module directory becomes unwritable while the pin is imported
    if os.geteuid() == 0:
        import subprocess
        subprocess.run(["chattr", "+i", FREEZE], check=True)
    else:
        os.chmod(FREEZE, 0o555)


class Step:
    VERSION = VERSION
'''


def build(repo: Repo, head_big: bool = False):
    """pin: a big weights file and a sub-directory; HEAD: files changed, deleted, added."""
    data = random.Random(7).randbytes(BIG)  # incompressible: it really takes the space
    repo.write(".gitignore", "__pycache__/\n")
    repo.write("pkg/__init__.py", "")
    repo.write("pkg/mod/__init__.py", "")
    repo.write("pkg/mod/a_first.txt", "a: pin\n")
    repo.write("pkg/mod/step.py", STEP_CODE.format(version="pin"))
    repo.write("pkg/mod/sub/inner.txt", "inner: pin\n")
    repo.write("pkg/mod/weights.bin", data)
    pin = repo.commit("pin")
    repo.write("pkg/mod/a_first.txt", "a: head\n")
    repo.write("pkg/mod/step.py", STEP_CODE.format(version="head"))
    repo.remove("pkg/mod/sub")
    repo.remove("pkg/mod/weights.bin")
    repo.write("pkg/mod/newsub/x.py", "X = 'head'\n")
    repo.write("pkg/mod/z_last.py", "Z = 'head'\n")
    if head_big:
        repo.write("pkg/mod/head_weights.bin", data[::-1])
    repo.commit("head")
    repo.write("notes.txt", "untracked, the user's\n")
    return pin


def assert_clean_failure(repo, before, exc, *words):
    assert isinstance(exc, ZgitError), f"{type(exc).__name__}: {exc}"
    text = str(exc)
    assert all(word in text for word in words), text
    assert repo.state() == before
    assert not repo.journal.exists()
    assert not any(".zgit-tmp" in p for p in repo.snapshot())


# -- permission denied ------------------------------------------------------------------


def _chattr_works(probe: Path) -> bool:
    probe.write_text("")
    try:
        ok = subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False
    if ok:
        subprocess.run(["chattr", "-i", str(probe)], capture_output=True)
    probe.unlink()
    return ok


@pytest.fixture
def read_only(tmp_path):
    """``read_only(path)`` makes a file or directory unwritable for this process, for real."""
    undo = []
    if os.geteuid() == 0:
        if not _chattr_works(tmp_path / "probe"):
            pytest.skip("running as root (chmod stops nothing) and chattr +i is not supported "
                        "on this filesystem: no real way to deny a write")

        def make(path: Path) -> None:
            subprocess.run(["chattr", "+i", str(path)], check=True, capture_output=True)
            undo.append(lambda: subprocess.run(["chattr", "-i", str(path)], capture_output=True))
    else:

        def make(path: Path) -> None:
            if not path.is_dir():
                pytest.skip("without root, chmod of a file does not stop a rename over it; "
                            "the directory cases cover this")
            mode = path.stat().st_mode
            path.chmod(0o555)
            undo.append(lambda: path.chmod(mode))

    yield make
    for step in reversed(undo):
        step()


@pytest.mark.parametrize("target", [
    "pkg/mod/step.py",   # a file the pin changes (after a_first.txt was already written)
    "pkg/mod/newsub",    # a directory the pin does not have: its file cannot be removed
    "pkg/mod",           # the whole module directory
])
def test_permission_denied(repo, read_only, target):
    pin = build(repo)
    before = repo.state()
    read_only(repo.path / target)
    with pytest.raises(Exception) as info:
        load_source(f"{STEP}@{pin}", strategy="checkout")
    assert_clean_failure(repo, before, info.value, "cannot write")
    assert "memory" in str(info.value)  # says what to do instead
    assert load_source(f"{STEP}@{pin}", strategy="memory").VERSION == "pin"  # writes nothing


def test_permission_denied_then_allowed_loads(repo, tmp_path):
    """After the cause is fixed, the same pin loads (nothing was left half-done)."""
    pin = build(repo)
    before = repo.state()
    target = repo.path / "pkg/mod/newsub"
    if os.geteuid() == 0:
        if not _chattr_works(tmp_path / "probe"):
            pytest.skip("chattr +i is not supported here")
        subprocess.run(["chattr", "+i", str(target)], check=True)
        lift = ["chattr", "-i", str(target)]
    else:
        target.chmod(0o555)
        lift = ["chmod", "755", str(target)]
    try:
        with pytest.raises(ZgitError):
            load_source(f"{STEP}@{pin}", strategy="checkout")
    finally:
        subprocess.run(lift, check=True)
    assert load_source(f"{STEP}@{pin}", strategy="checkout").VERSION == "pin"
    assert repo.state() == before


# -- file too large (RLIMIT_FSIZE: the kernel refuses the write, root or not) ------------


LIMITED_LOAD = """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
    import zgit
    try:
        zgit.load_source({source!r}, strategy="checkout")
    except zgit.ZgitError as exc:
        print("ZgitError:", exc)
    except BaseException as exc:
        print("OTHER", type(exc).__name__, exc)
    else:
        print("loaded")
    """


@pytest.mark.parametrize("limit, where", [
    (64 * 1024, "weights.bin"),  # the journal and small files fit, the weights do not
    (64, "journal"),             # not even the journal fits: nothing is touched at all
])
def test_file_too_large(repo, limit, where):
    pin = build(repo)
    before = repo.state()
    out = run_py(LIMITED_LOAD.format(limit=limit, source=f"{STEP}@{pin}"), repo.path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ZgitError:"), out.stdout
    assert where in out.stdout
    assert repo.state() == before
    assert not repo.journal.exists()
    assert not any(".zgit-tmp" in p for p in repo.snapshot())


# -- disk full (a tmpfs that really fills up) --------------------------------------------


@pytest.fixture
def small_disk(tmp_path, fresh_loader):
    """A 4 MiB tmpfs mounted for this test (skips where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                                capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no mount command: a real full disk cannot be made here (RLIMIT_FSIZE covers it)")
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}); RLIMIT_FSIZE covers the case")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(path: Path, leave: int) -> None:
    """Fill the filesystem of ``path`` with the file ``path``, leaving about ``leave`` bytes."""
    with open(path, "wb") as handle:
        chunk = b"\0" * 65536
        try:
            while True:
                handle.write(chunk)
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    size = path.stat().st_size
    os.truncate(path, max(0, size - leave))


@pytest.mark.parametrize("leave, where", [(48 * 1024, "weights.bin"), (0, "journal")])
def test_disk_full_while_writing_the_pin(small_disk, monkeypatch, leave, where):
    repo = Repo(small_disk / "project")
    monkeypatch.chdir(repo.path)
    pin = build(repo)
    zgit.Repository(repo.path)  # the first Repository opens and caches the git objects
    before = repo.state()
    filler = small_disk / "filler"
    fill(filler, leave)
    try:
        with pytest.raises(Exception) as info:
            load_source(f"{STEP}@{pin}", repo=repo.path, strategy="checkout")
    finally:
        filler.unlink()
    assert_clean_failure(repo, before, info.value, where)


def test_disk_full_while_importing_still_restores(small_disk, monkeypatch):
    """The pinned code fills the disk while it imports.  HEAD's files come back all the
    same: they waited aside on the same file system, and moving them back needs no space."""
    repo = Repo(small_disk / "project")
    monkeypatch.chdir(repo.path)
    pin = build(repo, head_big=True)
    before = repo.state()
    filler = small_disk / "filler"
    monkeypatch.setenv("RELIABILITY_FILL", str(filler))
    try:
        assert load_source(f"{STEP}@{pin}", repo=repo.path, strategy="checkout").VERSION == "pin"
    finally:
        filler.unlink()
    assert repo.state() == before
    assert not repo.journal.exists()
    assert zgit.recover(repo.path) == []


def test_restore_that_cannot_finish_then_recover(repo, tmp_path, monkeypatch):
    """The module directory becomes unwritable while the pin is imported (chattr +i; chmod
    for other users), so HEAD's files cannot all be put back: a ZgitError says to run
    recover, the journal stays, and recover (once writable again) restores the tree exactly."""
    pin = build(repo, head_big=True)
    before = repo.state()
    target = repo.path / "pkg/mod"
    if os.geteuid() == 0:
        if not _chattr_works(tmp_path / "probe"):
            pytest.skip("running as root and chattr +i is not supported here: no real way to deny a write")
        lift = ["chattr", "-i", str(target)]
    else:
        lift = ["chmod", "755", str(target)]
    monkeypatch.setenv("RELIABILITY_FREEZE", str(target))
    try:
        with pytest.raises(Exception) as info:
            load_source(f"{STEP}@{pin}", strategy="checkout")
    finally:
        subprocess.run(lift, check=True)
    assert isinstance(info.value, ZgitError), repr(info.value)
    assert "recover" in str(info.value)
    assert repo.journal.exists()
    restored = zgit.recover(repo.path)
    assert restored  # what the failed restore could not put back
    assert repo.state() == before
    assert not repo.journal.exists()
    assert zgit.recover(repo.path) == []


def test_ignored_file_in_the_way_of_the_pin_is_never_overwritten(repo):
    """A file git ignores sits where the pin has a file (or a directory): the user's bytes
    are kept, the load fails clearly, and the tree is as before."""
    repo.write(".gitignore", "__pycache__/\n")
    repo.write("pkg/__init__.py", "")
    repo.write("pkg/mod/__init__.py", "")
    repo.write("pkg/mod/step.py", "class Step:\n    VERSION = 'pin'\n")
    repo.write("pkg/mod/settings.local", "tracked at the pin\n")
    repo.write("pkg/mod/cache/index.txt", "tracked at the pin\n")
    pin = repo.commit("pin")
    repo.remove("pkg/mod/settings.local")
    repo.remove("pkg/mod/cache")
    repo.write(".gitignore", "__pycache__/\nsettings.local\ncache\n")
    repo.write("pkg/mod/step.py", "class Step:\n    VERSION = 'head'\n")
    repo.commit("head: stop tracking local files")
    repo.write("pkg/mod/settings.local", "the user's own secret settings\n")
    repo.write("pkg/mod/cache", "the user's ignored cache file, where the pin has a directory\n")
    before = repo.state()
    with pytest.raises(Exception) as info:
        load_source(f"{STEP}@{pin}", strategy="checkout")
    assert_clean_failure(repo, before, info.value, "settings.local")
    assert (repo.path / "pkg/mod/settings.local").read_text() == "the user's own secret settings\n"
    assert load_source(f"{STEP}@{pin}", strategy="memory").VERSION == "pin"


def test_permission_bits_of_restored_files_are_kept(repo):
    """A file the user made private (0600) is private again after a load that replaced it."""
    pin = build(repo)
    secret = repo.path / "pkg/mod/a_first.txt"
    secret.chmod(0o600)
    before = repo.state()
    assert load_source(f"{STEP}@{pin}", strategy="checkout").VERSION == "pin"
    assert repo.state() == before


# Figures for docs/guarantees.md: write faults injected by this module.
WRITE_FAULTS = 4 + 2 + 3 + 1  # permission denied, file too large (EFBIG), disk full (ENOSPC), frozen restore
