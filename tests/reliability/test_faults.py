"""Fault injection: the loading process is SIGKILLed at every step of a checkout.

Each kill point is reached through ``ZGIT_TEST_KILL_AT`` (zgit kills itself there with
SIGKILL: no ``finally`` runs, exactly like ``kill -9`` or the OOM killer).  Afterwards
``zgit recover`` (library and command line) must give back the tree exactly — git's status,
the index, and the bytes and modes of every file — and a second recover must do nothing.
A next load recovers by itself, and files the user edited after the crash are never
overwritten.
"""

from __future__ import annotations

import os
import py_compile
import signal
import subprocess
import sys
import time

import pytest

import zgit
from zgit import RecoverError, load_source
from tests.reliability._util import (
    MODULE_DIR,
    STEP,
    build_rich,
    cli_available,
    files_at,
    files_on_disk,
    popen_py,
    recover_cli,
    run_py,
)

pytestmark = pytest.mark.reliability

KILL_POINTS = ["journal-written", "bytecode-aside", "mid-materialize", "after-materialize", "after-import",
               "mid-restore", "after-restore"]
# Kill points after which the module directory is wholly the pin's.
AT_PIN = {"after-materialize", "after-import"}

LOAD = "import zgit; zgit.load_source({source!r}, strategy='checkout'); print('survived')"


def crash(repo, pin, point):
    """Run a checkout load of the pin in a subprocess that zgit kills at ``point``."""
    out = run_py(LOAD.format(source=f"{STEP}@{pin}"), repo.path, env={"ZGIT_TEST_KILL_AT": point})
    assert out.returncode == -signal.SIGKILL, f"kill point {point} was not reached: {out.stdout}{out.stderr}"
    assert repo.journal.exists(), "a killed checkout leaves its journal"


def recover_in_subprocess(repo, env=None):
    """``python -m zgit recover``; until the command line exists, the library in a fresh process."""
    if cli_available():
        return recover_cli(repo.path, env)
    return run_py("import zgit; print(zgit.recover('.'))", repo.path, env=env)


@pytest.mark.parametrize("how", ["library", "command"])
@pytest.mark.parametrize("point", KILL_POINTS)
def test_recover_restores_the_tree_exactly(repo, point, how):
    pin, _head = build_rich(repo)
    compile_head(repo)
    before, files = repo.state(), identity(repo, MODULE_DIR)
    crash(repo, pin, point)
    if point in AT_PIN:
        # The fault is real: the dead process left the module directory at the pin.
        assert files_on_disk(repo, MODULE_DIR) == files_at(repo, pin, MODULE_DIR)
    elif point == "journal-written":
        assert repo.state() == before  # the journal comes before the first byte of the tree
    elif point == "after-restore":
        assert repo.state() == before  # restored; only the journal is left to drop
    if how == "library":
        restored = zgit.recover(repo.path)
        assert isinstance(restored, list)
        if point in AT_PIN:
            assert f"{MODULE_DIR}/deleted_later.py" in restored and f"{MODULE_DIR}/added.py" in restored
    else:
        out = recover_in_subprocess(repo)
        assert out.returncode == 0, out.stderr
    assert repo.state() == before
    # The user's own files came back themselves: inode and mtime too, bytecode included.
    assert identity(repo, MODULE_DIR) == files
    assert not repo.journal.exists()
    # A second recover has nothing to do, and does nothing.
    assert zgit.recover(repo.path) == []
    assert repo.state() == before


def compile_head(repo):
    """The user's bytecode of HEAD's modules in the module directory, as an import writes it."""
    for path in sorted((repo.path / MODULE_DIR).rglob("*.py")):
        if "__pycache__" not in path.parts:
            py_compile.compile(str(path), doraise=True)
    assert list((repo.path / MODULE_DIR / "__pycache__").glob("step.*.pyc"))


def identity(repo, directory):
    """Every file below ``directory`` (bytecode included): (inode, mtime_ns, bytes, mode)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(repo.path / directory):
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for name in filenames + links:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            data = os.readlink(full).encode() if os.path.islink(full) else open(full, "rb").read()
            out[os.path.relpath(full, repo.path)] = (st.st_ino, st.st_mtime_ns, data, st.st_mode)
    return out


@pytest.mark.parametrize("point", KILL_POINTS)
def test_next_load_recovers_by_itself(repo, point):
    pin, _head = build_rich(repo)
    before = repo.state()
    crash(repo, pin, point)
    cls = load_source(f"{STEP}@{pin}", strategy="checkout")
    module = sys.modules[cls.__module__]
    assert (cls.VERSION, module.ON_DISK) == ("pin", "changed: pin\n")
    assert repo.state() == before
    assert not repo.journal.exists()


@pytest.mark.parametrize("point", KILL_POINTS)
def test_files_edited_after_the_crash_are_never_overwritten(repo, point):
    pin, _head = build_rich(repo)
    before_status, _index, before_files = repo.state()
    crash(repo, pin, point)
    mine = {
        f"{MODULE_DIR}/changed.txt": b"the user's work, typed after the crash\n",  # in pin and HEAD
        f"{MODULE_DIR}/added.py": b"# re-created by the user\n",  # HEAD only: absent at the pin
    }
    for path, data in mine.items():
        repo.write(path, data)
    repo.write(f"{MODULE_DIR}/oldsub/mine.py", "# new file of the user's in a directory the pin has\n")

    with pytest.raises(RecoverError) as info:
        zgit.recover(repo.path)
    assert set(mine) <= set(info.value.paths)
    assert all(path in str(info.value) for path in mine)
    with pytest.raises(RecoverError):  # a load refuses too, rather than overwrite
        load_source(f"{STEP}@{pin}", strategy="checkout")
    out = recover_in_subprocess(repo)
    assert out.returncode != 0 and "changed.txt" in out.stdout + out.stderr
    for path, data in mine.items():
        assert (repo.path / path).read_bytes() == data
    assert repo.journal.exists()  # kept until the tree can be restored

    # The user settles the edits (here: discards them); then recover completes.
    repo.git("checkout", "--", *mine)
    zgit.recover(repo.path)
    assert not repo.journal.exists()
    assert (repo.path / MODULE_DIR / "oldsub" / "mine.py").exists()
    repo.remove(f"{MODULE_DIR}/oldsub")
    assert repo.state() == (before_status, _index, before_files)


@pytest.mark.parametrize("point", ["mid-materialize", "after-import"])
def test_recover_killed_half_way_then_recovered_again(repo, point):
    pin, _head = build_rich(repo)
    before = repo.state()
    crash(repo, pin, point)
    out = recover_in_subprocess(repo, env={"ZGIT_TEST_KILL_AT": "mid-restore"})
    assert out.returncode == -signal.SIGKILL, out.stdout + out.stderr
    assert repo.journal.exists()
    out = recover_in_subprocess(repo)
    assert out.returncode == 0, out.stderr
    assert repo.state() == before
    assert zgit.recover(repo.path) == []


def test_a_load_waiting_on_the_lock_of_a_process_that_dies_recovers(repo, tmp_path):
    """Process A dies mid-import holding the lock; B, waiting for it, undoes A's checkout."""
    pin, _head = build_rich(repo)
    before = repo.state()
    started = tmp_path / "started"
    holder = popen_py(LOAD.format(source=f"pkg.mod.slow.Slow@{pin}"), repo.path,
                      env={"RELIABILITY_STARTED": str(started)})
    waiter = None
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert holder.poll() is None and time.monotonic() < deadline, "the slow import never started"
            time.sleep(0.01)
        waiter = popen_py(f"""
            import sys, zgit
            cls = zgit.load_source({f'{STEP}@{pin}'!r}, strategy='checkout')
            print(cls.VERSION, sys.modules[cls.__module__].ON_DISK.strip())
            """, repo.path, env={"ZGIT_LOCK_TIMEOUT": "60"}, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
        holder.send_signal(signal.SIGKILL)
        assert holder.wait(timeout=60) == -signal.SIGKILL
        out, err = waiter.communicate(timeout=120)
        assert waiter.returncode == 0, err
        assert out.split() == ["pin", "changed:", "pin"]
    finally:
        for proc in (holder, waiter):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert repo.state() == before
    assert not repo.journal.exists()


# Figures for docs/guarantees.md: SIGKILLs injected by this module.
FAULTS_INJECTED = len(KILL_POINTS) * 2 + len(KILL_POINTS) * 2 + 2 * 2 + 1
