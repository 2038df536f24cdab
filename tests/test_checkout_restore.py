"""The checkout strategy as users' repositories need it: the user's own files come back
themselves (bytes, mode, mtime and inode), bytecode is Python's (committed or not), what
is written is what ``git checkout`` would write, signals end the process only after the
tree is restored, and recover can finish after the user kept an edit.

Every test builds a real repository and checks it with the git command line.
"""

from __future__ import annotations

import os
import py_compile
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Dict, Tuple

import pytest

import zgit
from zgit import RecoverError, load_source
from tests._project import SOURCE, build_history, write_version
from tests.conftest import git_env, status
from tests.conftest import settle_index as conftest_settle_index

MODULE_DIR = "trainers/my_awesome_trainer"
ZGIT_SRC = str(Path(__file__).resolve().parent.parent)
JOURNAL = Path(".git") / "zgit" / "journal.json"


def identity(root: Path, directory: str = MODULE_DIR) -> Dict[str, Tuple[int, int, bytes, int]]:
    """Every file below ``directory`` (bytecode included): (inode, mtime_ns, bytes, mode)."""
    out = {}
    base = root / directory
    for dirpath, dirnames, filenames in os.walk(base):
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for name in filenames + links:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            data = os.fsencode(os.readlink(full)) if stat.S_ISLNK(st.st_mode) else Path(full).read_bytes()
            out[os.path.relpath(full, root)] = (st.st_ino, st.st_mtime_ns, data, st.st_mode)
    return out


def diff_index_quiet(repo) -> int:
    """Exit status of ``git diff-index --quiet HEAD`` (it trusts the index's stat data)."""
    return subprocess.run(["git", "diff-index", "--quiet", "HEAD"], cwd=getattr(repo, "path", repo), env=git_env(),
                          capture_output=True).returncode


def settle_index(repo) -> None:
    """:func:`tests.conftest.settle_index` for the module directory."""
    conftest_settle_index(Path(getattr(repo, "path", repo)), MODULE_DIR)


def compile_all(root: Path, directory: str = MODULE_DIR) -> None:
    """Write the bytecode Python would write for every module below ``directory``."""
    for path in sorted((root / directory).rglob("*.py")):
        if "__pycache__" not in path.parts:
            py_compile.compile(str(path), doraise=True)


def child_env(**extra: str) -> Dict[str, str]:
    env = git_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # users write bytecode
    env["PYTHONPATH"] = ZGIT_SRC + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_py(code: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=child_env(**extra),
                          capture_output=True, text=True, timeout=120)


# -- the user's own files come back themselves ----------------------------------------------


def test_restored_files_keep_mtime_inode_mode_and_their_bytecode(repo):
    shas = build_history(repo, 3)
    (repo.path / MODULE_DIR / "helper.py").chmod(0o600)  # the user's own permission bits
    compile_all(repo.path)  # the user's bytecode of HEAD's modules, as any import writes it
    settle_index(repo)
    assert diff_index_quiet(repo) == 0
    before_status, before_index, before = repo.status(), repo.index_bytes(), identity(repo.path)
    assert any("__pycache__" in p for p in before)
    cls = load_source(f"{SOURCE}@{shas[0]}", strategy="checkout")
    assert cls().version() == (0, 0)
    # First (git status would refresh the index itself): the index's stat data was refreshed.
    assert diff_index_quiet(repo) == 0
    assert identity(repo.path) == before  # bytes, mode, mtime and inode; bytecode too
    assert (repo.status(), repo.index_bytes()) == (before_status, before_index)
    assert not (repo.path / JOURNAL).exists()
    assert not any((repo.path / ".git" / "zgit" / "aside").iterdir())


@pytest.mark.parametrize("had_bytecode", [True, False], ids=["user-bytecode", "no-bytecode"])
def test_bytecode_written_during_the_checkout_is_never_run_for_the_restored_file(repo, had_bytecode):
    """The pinned code makes Python compile the pinned helper on disk (a subprocess
    importing it by its real name).  HEAD's helper has the same size and, restored with its
    own mtime, could be dated the same second: that bytecode must be gone afterwards."""
    write_version(repo, 0)
    repo.write(f"{MODULE_DIR}/spawn.py", textwrap.dedent("""\
        import os, subprocess, sys
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        subprocess.run([sys.executable, "-c", "import trainers.my_awesome_trainer.helper"],
                       cwd=os.getcwd(), env=env, check=True)
        class Spawn:
            pass
        """))
    pin = repo.commit("pin")
    repo.remove(f"{MODULE_DIR}/spawn.py")
    write_version(repo, 1)
    repo.commit("head")
    os.utime(repo.path / MODULE_DIR / "helper.py")  # HEAD's helper dated this very second
    if had_bytecode:
        compile_all(repo.path)
    before = identity(repo.path)
    load_source(f"trainers.my_awesome_trainer.spawn.Spawn@{pin}", strategy="checkout")
    if had_bytecode:
        assert identity(repo.path) == before  # the user's own bytecode is back, the pin's gone
    else:
        assert not list((repo.path / MODULE_DIR / "__pycache__").glob("helper.*.pyc"))
        assert {p: v for p, v in identity(repo.path).items() if "__pycache__" not in p} == before
    out = run_py("import trainers.my_awesome_trainer.helper as h; print(h.HELPER_VERSION)", repo.path)
    assert out.stdout.strip() == "1", out.stderr


def _commit_bytecode_history(repo):
    """A repository without a .gitignore where ``git add -A`` committed the bytecode."""
    shas = []
    for version in range(2):
        write_version(repo, version)
        compile_all(repo.path, "trainers")
        shas.append(repo.commit(f"v{version} with its bytecode"))
    tracked = repo.git("ls-files", "--", f"{MODULE_DIR}/__pycache__").split()
    assert tracked and all(p.endswith(".pyc") for p in tracked)
    return shas


def test_committed_bytecode_is_never_written_nor_deleted(repo):
    shas = _commit_bytecode_history(repo)
    assert not (repo.path / ".gitignore").exists()
    full_status = status(repo, bytecode=True)
    before = identity(repo.path)
    cls = load_source(f"{SOURCE}@{shas[0]}", strategy="checkout")
    assert cls().version() == (0, 0)
    assert identity(repo.path) == before  # the tracked .pyc files: same bytes, mtime, inode
    assert status(repo, bytecode=True) == full_status
    out = run_py("import trainers.my_awesome_trainer.my_trainer_step as m; print(m.VERSION)", repo.path)
    assert out.stdout.strip() == "1", out.stderr


def test_committed_bytecode_kill_then_recover(repo):
    shas = _commit_bytecode_history(repo)
    full_status, before = status(repo, bytecode=True), identity(repo.path)
    for point in ("bytecode-aside", "after-materialize", "mid-restore", "after-restore"):
        out = run_py(f"import zgit; zgit.load_source('{SOURCE}@{shas[0]}', strategy='checkout')",
                     repo.path, ZGIT_TEST_KILL_AT=point)
        assert out.returncode == -signal.SIGKILL, out.stderr
        zgit.recover(repo.path)
        assert identity(repo.path) == before, point
        assert status(repo, bytecode=True) == full_status
        assert not (repo.path / JOURNAL).exists()


def test_aside_on_another_file_system_waits_beside_the_file(repo, tmp_path):
    """When .git is on another file system (a bind mount, a tmpfs), the user's files wait
    beside themselves, which still keeps their inode and mtime."""
    if os.geteuid() != 0:
        pytest.skip("needs mount to put .git/zgit on another file system")
    shas = build_history(repo, 2)
    state = repo.path / ".git" / "zgit"
    state.mkdir(exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(state)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        before, before_status = identity(repo.path), repo.status()
        assert load_source(f"{SOURCE}@{shas[0]}", strategy="checkout").VERSION == 0
        assert identity(repo.path) == before
        assert repo.status() == before_status
        out = run_py(f"import zgit; zgit.load_source('{SOURCE}@{shas[0]}', strategy='checkout')",
                     repo.path, ZGIT_TEST_KILL_AT="after-materialize")
        assert out.returncode == -signal.SIGKILL
        assert any(p.endswith(".zgit-aside") for p in os.listdir(repo.path / MODULE_DIR))
        zgit.loader.forget_loaded()
        zgit.recover(repo.path)
        assert identity(repo.path) == before
        assert repo.status() == before_status
    finally:
        subprocess.run(["umount", "-l", str(state)], capture_output=True)


# -- signals ---------------------------------------------------------------------------------

SLOW = """\
import os, time
open("started", "w").close()
deadline = time.time() + 60
while not os.path.exists("go") and time.time() < deadline:
    time.sleep(0.02)
class Slow:
    pass
"""


def _slow_pin(repo):
    build_history(repo, 1)
    repo.write(f"{MODULE_DIR}/slow.py", SLOW)
    pin = repo.commit("pin: a module that imports slowly")
    repo.remove(f"{MODULE_DIR}/slow.py")
    write_version(repo, 1)
    repo.commit("head")
    return pin


def _start(repo, pin, prelude=""):
    code = prelude + f"\nimport zgit\ncls = zgit.load_source('trainers.my_awesome_trainer.slow.Slow@{pin}', strategy='checkout')\nprint('loaded', cls.__name__, flush=True)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=repo.path, env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (repo.path / "started").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    return proc


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_terminating_signal_restores_the_tree_then_ends_the_process_by_it(repo, signum):
    pin = _slow_pin(repo)
    before, before_status = identity(repo.path), repo.status()
    proc = _start(repo, pin)
    assert (repo.path / MODULE_DIR / "slow.py").exists()  # the pin is on disk now
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signum, err  # ended by the signal, as without zgit
    assert "loaded" not in out
    (repo.path / "started").unlink()
    assert identity(repo.path) == before
    assert repo.status() == before_status
    assert not (repo.path / JOURNAL).exists()


def test_an_ignored_sigint_stays_ignored(repo):
    """A background job that ignores SIGINT keeps loading when Ctrl-C hits the foreground."""
    pin = _slow_pin(repo)
    before = identity(repo.path)
    proc = _start(repo, pin, prelude="import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)  # give a (wrong) handler the chance to run; not a timing assertion
    (repo.path / "go").touch()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "loaded Slow" in out and "interrupted" not in err
    assert identity(repo.path) == before


def test_the_process_own_sigterm_handler_still_runs(repo):
    pin = _slow_pin(repo)
    before = identity(repo.path)
    proc = _start(repo, pin, prelude=(
        "import signal\n"
        "signal.signal(signal.SIGTERM, lambda s, f: (print('own handler', flush=True), open('go', 'w').close()))"
    ))
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.split("\n")[:2] == ["own handler", "loaded Slow"]
    assert identity(repo.path) == before


def test_ctrl_c_restores_the_tree_and_raises_keyboard_interrupt(repo):
    pin = _slow_pin(repo)
    before = identity(repo.path)
    proc = _start(repo, pin, prelude="import sys")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert identity(repo.path) == before


# -- recover after the user kept an edit ---------------------------------------------------


def _crash(repo, pin):
    out = run_py(f"import zgit; zgit.load_source('{SOURCE}@{pin}', strategy='checkout')", repo.path,
                 ZGIT_TEST_KILL_AT="after-materialize")
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert (repo.path / JOURNAL).exists()


def test_recover_finishes_when_the_edited_file_was_committed(repo):
    shas = build_history(repo, 2)
    _crash(repo, shas[0])
    trainer = repo.path / MODULE_DIR / "my_trainer_step.py"
    trainer.write_text(trainer.read_text() + "\n# the user's fix, made on the old code and kept\n")
    repo.git("add", str(trainer))
    repo.git("commit", "-q", "-m", "keep my fix")
    kept = trainer.read_bytes()
    restored = zgit.recover(repo.path)
    assert f"{MODULE_DIR}/helper.py" in restored
    assert trainer.read_bytes() == kept
    assert repo.status() == ""
    assert not (repo.path / JOURNAL).exists()
    assert zgit.recover(repo.path) == []


def test_recover_keep_edits_on_the_command_line(repo):
    shas = build_history(repo, 2)
    before = identity(repo.path)
    _crash(repo, shas[0])
    trainer = repo.path / MODULE_DIR / "my_trainer_step.py"
    trainer.write_text("# the user's work in progress\n")
    refused = subprocess.run([sys.executable, "-m", "zgit", "recover"], cwd=repo.path, env=child_env(),
                             capture_output=True, text=True)
    assert refused.returncode != 0
    assert "my_trainer_step.py" in refused.stderr and "--keep-edits" in refused.stderr
    with pytest.raises(RecoverError):
        load_source(f"{SOURCE}@{shas[0]}", strategy="checkout")
    done = subprocess.run([sys.executable, "-m", "zgit", "recover", "--keep-edits"], cwd=repo.path,
                          env=child_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert trainer.read_text() == "# the user's work in progress\n"
    helper = f"{MODULE_DIR}/helper.py"
    assert identity(repo.path)[helper] == before[helper]  # the rest came back itself
    assert repo.status() == f" M {MODULE_DIR}/my_trainer_step.py\n"
    assert not (repo.path / JOURNAL).exists()
    assert not any((repo.path / ".git" / "zgit" / "aside").iterdir())


def test_a_journal_of_an_older_zgit_still_recovers(repo):
    """A version 1 journal (zgit before move-aside restores) names no waiting files: recover
    writes HEAD's files from the object database, with the permission bits it recorded."""
    import json

    shas = build_history(repo, 2)
    (repo.path / MODULE_DIR / "helper.py").chmod(0o600)
    before_status, before_files = repo.status(), repo.snapshot()
    _crash(repo, shas[0])
    journal = json.loads((repo.path / JOURNAL).read_text())
    aside = repo.path / ".git" / "zgit" / "aside"
    for name, _path, _in_state in [(a[1], a[0], a[2]) for a in journal["asides"]]:
        (repo.path / ".git" / "zgit" / name).unlink()  # zgit 1 unlinked the user's files
    for key in ("asides", "bytecode", "stats"):
        journal.pop(key)
    journal["version"] = 1
    journal["perms"] = {f"{MODULE_DIR}/helper.py": 0o600}
    (repo.path / JOURNAL).write_text(json.dumps(journal))
    assert sorted(zgit.recover(repo.path)) == [f"{MODULE_DIR}/helper.py", f"{MODULE_DIR}/my_trainer_step.py"]
    assert (repo.status(), repo.snapshot()) == (before_status, before_files)
    assert not (repo.path / JOURNAL).exists() and not any(aside.iterdir())


# -- the journal's file is reused, never half-published ---------------------------------------

SPARE = Path(".git") / "zgit" / "journal.spare"


def test_the_journal_file_is_reused_and_a_shorter_journal_still_reads_whole(repo):
    """Each checkout rewrites the file the last journal was retired to (no file creation
    per load).  A journal shorter than the file's old one reads as exactly itself: a dead
    process's journal recovers after a longer one was written into the same file."""
    import json

    shas = build_history(repo, 3)
    load_source(f"{SOURCE}@{shas[0]}", strategy="checkout")
    spare = repo.path / SPARE
    assert spare.is_file() and not (repo.path / JOURNAL).exists()
    inode = spare.stat().st_ino
    long_payload = json.loads(spare.read_text())
    spare.write_text(json.dumps(dict(long_payload, padding="x" * 3000)))  # a longer journal was here
    before = identity(repo.path)
    _crash(repo, shas[1])  # its journal is written into the longer file, then published
    journal_bytes = (repo.path / JOURNAL).read_bytes()
    journal = json.loads(journal_bytes)
    assert "padding" not in journal and journal["sha"] == shas[1]
    assert journal_bytes.rstrip(b" ") == json.dumps(journal).encode()
    assert (repo.path / JOURNAL).stat().st_ino == inode
    assert sorted(zgit.recover(repo.path)) == [f"{MODULE_DIR}/helper.py", f"{MODULE_DIR}/my_trainer_step.py"]
    assert identity(repo.path) == before and repo.status() == ""
    assert spare.stat().st_ino == inode and not (repo.path / JOURNAL).exists()


@pytest.mark.parametrize("kind", ["symlink", "directory", "fifo"])
def test_a_spare_journal_that_is_not_a_file_is_replaced_never_followed(repo, tmp_path, kind):
    shas = build_history(repo, 2)
    spare = repo.path / SPARE
    spare.parent.mkdir(exist_ok=True)
    target = tmp_path / "outside.txt"
    target.write_text("not zgit's\n")
    if kind == "symlink":
        spare.symlink_to(target)
    elif kind == "directory":
        spare.mkdir()
    else:
        os.mkfifo(spare)
    before = identity(repo.path)
    assert load_source(f"{SOURCE}@{shas[0]}", strategy="checkout")().version() == (0, 0)
    assert target.read_text() == "not zgit's\n"
    assert spare.is_file() and not spare.is_symlink()
    assert identity(repo.path) == before and repo.status() == ""
