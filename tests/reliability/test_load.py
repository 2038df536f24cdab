"""Load: many processes and threads loading every pin of a 30-commit history at once.

Every load checks that it got its own version — the class, a helper module it imports
relatively, and the file the module read from the work tree while it was imported (so a
checkout that another process changed under it would show) — and the tree is exactly as
before at the end.  A hung lock holder gives a timeout error naming its pid, while
memory-strategy loads go on.
"""

from __future__ import annotations

import json
import random
import subprocess
import threading

import pytest

import zgit
from zgit import LockTimeoutError, load_source
from tests.reliability._util import Repo, popen_py

pytestmark = pytest.mark.reliability

COMMITS = 30
PROCESSES = 8
THREADS = 8
SOURCE = "pkg.mod.step.Step"

STEP = '''\
import os
from .helper import HELPER

VERSION = {version}
try:  # under the memory strategy a checkout in another thread may be replacing it
    with open(os.path.join(os.getcwd(), "pkg", "mod", "version.txt")) as _handle:
        ON_DISK = _handle.read()
except OSError:
    ON_DISK = None


class Step:
    VERSION = VERSION

    def seen(self):
        return (VERSION, HELPER, ON_DISK)
'''


def build_history(repo: Repo):
    """30 commits; each changes files, adds and removes others, flips an exec bit and
    moves a sub-directory, so that every checkout between two of them does real work."""
    shas = []
    repo.write(".gitignore", "__pycache__/\n")
    repo.write("pkg/__init__.py", "")
    for i in range(COMMITS):
        repo.write("pkg/mod/__init__.py", "")
        repo.write("pkg/mod/step.py", STEP.format(version=i))
        repo.write("pkg/mod/helper.py", f"HELPER = {i}\n")
        repo.write("pkg/mod/version.txt", f"{i}\n")
        repo.write("pkg/mod/tool.sh", "#!/bin/sh\n", mode=0o755 if i % 2 else 0o644)
        for name in ("even.py", "sub0", "sub1", "sub2"):
            if (repo.path / "pkg/mod" / name).exists():
                repo.remove(f"pkg/mod/{name}")
        if i % 2 == 0:
            repo.write("pkg/mod/even.py", f"EVEN = {i}\n")
        repo.write(f"pkg/mod/sub{i % 3}/deep/x.py", f"X = {i}\n")
        shas.append(repo.commit(f"v{i}"))
    repo.write("notes.txt", "untracked, the user's\n")
    return shas


def expected(version):
    return [version, version, f"{version}\n"]


WORKER = """
    import json, random, sys, zgit
    shas = json.loads({shas!r})
    order = list(enumerate(shas))
    random.Random({seed}).shuffle(order)
    seen = []
    for version, sha in order:
        cls = zgit.load_source("{source}@" + sha, strategy="checkout")
        seen.append([version, list(cls().seen())])
    print(json.dumps(seen))
    """


def test_processes_load_every_pin_shuffled(repo):
    shas = build_history(repo)
    before = repo.state()
    procs = [
        popen_py(WORKER.format(seed=seed, source=SOURCE, shas=json.dumps(shas)), repo.path,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for seed in range(PROCESSES)
    ]
    checked = 0
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            seen = json.loads(out)
            assert sorted(v for v, _ in seen) == list(range(COMMITS))  # every pin, once
            for version, got in seen:
                assert got == expected(version), f"pin {version} loaded as {got}"
                checked += 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert checked == PROCESSES * COMMITS
    assert repo.state() == before
    assert not repo.journal.exists()


@pytest.mark.parametrize("strategies", [("checkout",), ("memory",), ("checkout", "memory")])
def test_threads_load_every_pin_shuffled(repo, strategies):
    shas = build_history(repo)
    before = repo.state()
    errors = []
    results = []
    barrier = threading.Barrier(THREADS)

    def worker(index):
        strategy = strategies[index % len(strategies)]
        order = list(enumerate(shas))
        random.Random(index).shuffle(order)
        try:
            barrier.wait(timeout=60)
            for version, sha in order:
                cls = load_source(f"{SOURCE}@{sha}", strategy=strategy)
                results.append((version, strategy, list(cls().seen())))
        except BaseException as exc:  # reported below, with the thread's strategy
            errors.append((strategy, repr(exc)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(results) == THREADS * COMMITS
    for version, strategy, (cls_version, helper, on_disk) in results:
        assert (cls_version, helper) == (version, version)
        if strategies == ("checkout",):
            assert on_disk == f"{version}\n"  # imported while the pin was on disk
    assert repo.state() == before
    assert not repo.journal.exists()


def test_hung_lock_holder_times_out_naming_its_pid_while_memory_loads_go_on(repo, monkeypatch):
    shas = build_history(repo)
    before = repo.state()
    holder = popen_py("""
        import time, zgit
        from zgit.loader.checkout import locked
        with locked(zgit.Repository(".").git, 10):
            print("held", flush=True)
            time.sleep(120)
        """, repo.path, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("ZGIT_LOCK_TIMEOUT", "1")
        with pytest.raises(LockTimeoutError) as info:
            load_source(f"{SOURCE}@{shas[0]}", strategy="checkout")
        assert f"process {holder.pid}" in str(info.value)
        assert "checkout.lock" in str(info.value) and "memory" in str(info.value)
        with pytest.raises(LockTimeoutError, match=f"process {holder.pid}"):
            zgit.recover(repo.path)  # recover waits for the same lock: never undoes a live checkout
        for version, sha in enumerate(shas):
            assert list(load_source(f"{SOURCE}@{sha}", strategy="memory")().seen())[:2] == [version, version]
        assert repo.state() == before
    finally:
        holder.kill()
        holder.wait()
    zgit.loader.forget_loaded()
    cls = load_source(f"{SOURCE}@{shas[3]}", strategy="checkout")  # the lock died with its holder
    assert list(cls().seen()) == expected(3)
    assert repo.state() == before


# Figures for docs/guarantees.md: loads whose version was checked by this module.
LOADS_CHECKED = PROCESSES * COMMITS + 3 * THREADS * COMMITS + COMMITS + 1
