"""The index refresh after a checkout load: zgit rewrites only the stat data of the files it
put back, in the index file it has parsed, and seals it with a new checksum.

Checked against git itself: ``git fsck`` (which verifies the index checksum),
``git diff-index``/``git diff-files`` (which trust the stat data), ``git ls-files --debug``,
over index versions 2, 3 and 4 and the extensions git writes (cache tree, untracked
cache, end-of-index-entries and offset table).  The racy case, a busy ``index.lock`` and a
damaged checksum each take the exact, slower way or leave the index alone.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests._project import SOURCE, build_history
from tests.conftest import WorkTree, git_env, settle_index
from tests.test_gitindex_and_convert import ls_files_debug, run_git
from zgit import ZgitError, load_source
from zgit.gitindex import GitIndex, IndexFormatError, read_index
from zgit.gitrepo import open_repo

MODULE_DIR = "trainers/my_awesome_trainer"


def git_rc(repo: WorkTree, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo.path, env=git_env(), capture_output=True, text=True)


def settle(repo: WorkTree) -> None:
    """Every tracked file dated back, the index refreshed, the next second begun."""
    settle_index(repo.path)


def plumbing_agrees(repo: WorkTree) -> None:
    """What scripts and CI ask git without refreshing the index says: clean, and the index
    is whole (its checksum verified by fsck)."""
    assert git_rc(repo, "diff-index", "--quiet", "HEAD").returncode == 0
    assert git_rc(repo, "diff-files", "--quiet").returncode == 0
    fsck = git_rc(repo, "fsck", "--no-dangling", "--no-progress")
    assert fsck.returncode == 0 and "index" not in fsck.stderr, fsck.stderr


VARIANTS = {
    "v2": [],
    "v4": [("update-index", "--index-version", "4")],
    "v3-skip-worktree": [("update-index", "--skip-worktree", "--", "other/skipped.txt")],
    "untracked-cache": [("config", "core.untrackedCache", "true"), ("update-index", "--untracked-cache"),
                        ("status", "--porcelain")],
    "eoie-ieot": [("config", "index.recordEndOfIndexEntries", "true"),
                  ("config", "index.recordOffsetTable", "true"), ("config", "index.threads", "2")],
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("filler", [0, 1200], ids=["small", "index-over-64KiB"])
def test_checkout_load_leaves_an_index_git_trusts(repo, variant, filler):
    shas = build_history(repo, 2)
    repo.write("other/skipped.txt", "skipped\n")
    for k in range(filler):
        repo.write(f"lib/part{k // 100:02d}/f{k:04d}.txt", f"filler {k}\n")
    repo.commit("more files")
    for command in VARIANTS[variant]:
        run_git(repo, *command)
    settle(repo)
    run_git(repo, "update-index", "-q", "--refresh")  # written with the variant's settings
    index_path = repo.path / ".git" / "index"
    before_entries, before = ls_files_debug(repo), index_path.read_bytes()
    extensions = [sig for sig in (b"TREE", b"UNTR", b"EOIE", b"IEOT") if sig in before]
    plumbing_agrees(repo)

    assert load_source(f"{SOURCE}@{shas[0]}", strategy="checkout")().version() == (0, 0)

    plumbing_agrees(repo)
    after = index_path.read_bytes()
    assert after[-20:] == hashlib.sha1(after[:-20]).digest()
    assert len(after) == len(before) and after[:12] == before[:12]  # same version and entries
    for signature in extensions:
        assert signature in after
    after_entries = ls_files_debug(repo)
    assert sorted(after_entries) == sorted(before_entries)
    changed = {p for p in after_entries if after_entries[p] != before_entries[p]}
    assert changed and all(p.startswith(MODULE_DIR + "/") for p in changed)  # the files put back only
    for path in changed:
        assert {k: v for k, v in after_entries[path].items() if k not in ("ctime",)} == \
            {k: v for k, v in before_entries[path].items() if k not in ("ctime",)}
    # zgit's own parse of the index is the file it wrote: the next clean check reads nothing
    git = open_repo(repo.path)
    assert git._index[1] is not None and git._index[1].data == after
    assert repo.status() == ""


def test_a_racily_clean_file_changed_in_place_stays_changed(repo):
    """Racy git: a tracked file rewritten in place with other bytes of the same size, in
    the second the index recorded it, keeps the stat data the index holds (here with
    ``core.trustCtime=false``, common where ctime is unreliable).  Only its racy timestamp
    tells git to read it.  The index zgit writes after a load is newer than that file, so
    it must mark the entry (size 0), as git does, or the edit would vanish from
    ``git status``."""
    shas = build_history(repo, 2)
    run_git(repo, "config", "core.trustCtime", "false")
    settle(repo)
    edited = repo.path / "notes.txt"
    edited.write_bytes(b"aaaa\n")
    run_git(repo, "add", "notes.txt")
    run_git(repo, "commit", "-q", "-m", "notes")
    recorded = os.stat(edited)
    index_second = os.stat(repo.path / ".git" / "index").st_mtime_ns // 10**9
    with open(edited, "r+b") as handle:  # in place: same inode
        handle.write(b"bbbb\n")
    os.utime(edited, ns=(recorded.st_atime_ns, recorded.st_mtime_ns))
    if recorded.st_mtime_ns // 10**9 != index_second:
        pytest.skip("the machine was too slow to stay within one second")
    assert "notes.txt" in git_rc(repo, "diff-files", "--name-only").stdout  # git sees it (racy)
    time.sleep(1.05 - time.time() % 1)  # zgit's index is written in a later second
    load_source(f"{SOURCE}@{shas[0]}", strategy="checkout")
    assert "notes.txt" in git_rc(repo, "diff-files", "--name-only").stdout
    assert " M notes.txt" in repo.git("status", "--porcelain")
    index, _ = read_index(str(repo.path / ".git" / "index"))
    assert index.get("notes.txt").size == 0  # marked, as git marks it


def test_a_racily_clean_unchanged_file_is_left_as_it_is(repo, caplog):
    repo.write("notes.txt", "unchanged\n")
    shas = build_history(repo, 2)
    settle(repo)
    future = time.time() + 3600
    os.utime(repo.path / "notes.txt", (future, future))  # racy for an hour
    run_git(repo, "update-index", "-q", "--refresh")
    with caplog.at_level(logging.DEBUG, logger="zgit.gitrepo"):
        load_source(f"{SOURCE}@{shas[0]}", strategy="checkout")
    assert "libgit2" not in caplog.text
    plumbing_agrees(repo)
    index, _ = read_index(str(repo.path / ".git" / "index"))
    assert index.get("notes.txt").size == len("unchanged\n")  # read, unchanged: not marked


def test_many_racily_clean_entries_take_libgit2s_way(repo, caplog):
    """Right after git wrote a large directory, many entries may be racily clean: libgit2
    reads them (in C) before writing the index."""
    shas = build_history(repo, 2)
    for k in range(80):
        repo.write(f"data/f{k:02d}.txt", f"{k}\n")
    repo.commit("data")
    settle(repo)
    future = time.time() + 3600
    for k in range(80):
        os.utime(repo.path / "data" / f"f{k:02d}.txt", (future, future))
    run_git(repo, "update-index", "-q", "--refresh")
    with caplog.at_level(logging.DEBUG, logger="zgit.gitrepo"):
        load_source(f"{SOURCE}@{shas[0]}", strategy="checkout")
    assert "many entries may be racily clean" in caplog.text
    plumbing_agrees(repo)


def test_a_busy_index_lock_is_left_alone(repo, caplog):
    shas = build_history(repo, 2)
    settle(repo)
    lock = repo.path / ".git" / "index.lock"
    lock.write_bytes(b"another git's work in progress")
    index_before = (repo.path / ".git" / "index").read_bytes()
    with caplog.at_level(logging.INFO, logger="zgit.gitrepo"):
        load_source(f"{SOURCE}@{shas[0]}", strategy="checkout")
    assert lock.read_bytes() == b"another git's work in progress"
    assert (repo.path / ".git" / "index").read_bytes() == index_before
    assert "locked by another git process" in caplog.text
    lock.unlink()
    assert repo.status() == ""  # git refreshes the entries itself


def test_a_damaged_index_is_never_resealed(repo, caplog):
    shas = build_history(repo, 2)
    settle(repo)
    index_path = repo.path / ".git" / "index"
    damaged = bytearray(index_path.read_bytes())
    damaged[-1] ^= 0xFF  # the checksum no longer matches the entries
    index_path.write_bytes(bytes(damaged))
    time.sleep(1.05 - time.time() % 1)
    before = repo.snapshot()
    with caplog.at_level(logging.DEBUG, logger="zgit.gitrepo"):
        assert load_source(f"{SOURCE}@{shas[0]}", strategy="checkout")().version() == (0, 0)
    assert "checksum does not match" in caplog.text
    after = index_path.read_bytes()
    assert after == bytes(damaged)  # still damaged: git fsck says so
    assert repo.snapshot() == before


# -- the rewrite itself, against a fresh hash and a fresh parse ------------------------------


@pytest.fixture(scope="module")
def big_index(tmp_path_factory):
    """Indexes of 1,500 entries (over 64 KiB: the checksum's checkpoints are used) in
    versions 2 and 4, as bytes."""
    repo = WorkTree(tmp_path_factory.mktemp("bigindex") / "repo")
    for k in range(1500):
        repo.write(f"d{k % 7}/file{k:04d}.py", f"x = {k}\n")
    repo.commit("many files")
    out = {}
    for version in (2, 4):
        run_git(repo, "update-index", "--index-version", str(version))
        out[version] = (repo.path / ".git" / "index").read_bytes()
    return _Quiet(out)


class _Quiet(dict):
    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example
        return "<indexes of 1,500 entries, versions 2 and 4>"


def fake_stat(seed: int) -> SimpleNamespace:
    return SimpleNamespace(st_ctime_ns=seed * 1_000_000_007, st_mtime_ns=seed * 999_999_937 + 5,
                           st_dev=seed % 97, st_ino=seed * 31 + (1 << 33), st_uid=seed % 1000,
                           st_gid=seed % 500, st_size=seed % 4096 + (1 << 32))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(version=st.sampled_from([2, 4]),
       rounds=st.lists(st.lists(st.tuples(st.integers(0, 1499), st.integers(1, 2**31)), min_size=1, max_size=6),
                       min_size=1, max_size=4))
def test_with_stat_changes_only_the_stat_data_and_reseals(big_index, version, rounds):
    index = GitIndex(big_index[version], 0)
    paths = sorted(index.entries_under(""))
    expected = {p: e for p, e in index.entries_under("").items()}
    for changes in rounds:
        stats = {paths[i]: fake_stat(seed) for i, seed in changes}
        index = index.with_stat(stats)
        data = index.data
        assert data[-20:] == hashlib.sha1(data[:-20]).digest()
        for path, st_ in stats.items():
            old = expected[path]
            expected[path] = old._replace(
                ctime_s=(st_.st_ctime_ns // 10**9) & 0xFFFFFFFF, ctime_ns=st_.st_ctime_ns % 10**9,
                mtime_s=(st_.st_mtime_ns // 10**9) & 0xFFFFFFFF, mtime_ns=st_.st_mtime_ns % 10**9,
                dev=st_.st_dev, ino=st_.st_ino & 0xFFFFFFFF, uid=st_.st_uid, gid=st_.st_gid,
                size=st_.st_size & 0xFFFFFFFF)
        assert GitIndex(data, 0).entries_under("") == expected  # a fresh parse of the new bytes
        assert index.entries_under("") == expected


def test_with_stat_refuses_a_path_without_an_entry(big_index):
    with pytest.raises(IndexFormatError):
        GitIndex(big_index[2], 0).with_stat({"no/such/file.py": fake_stat(1)})


def test_read_index_then_rewrite_matches_git_update_index(tmp_path):
    """Differential: zgit's rewrite of a file's stat data gives the entry git itself
    records for that file (``git update-index --refresh`` after a touch)."""
    repo = WorkTree(tmp_path / "repo")
    repo.write("pkg/a.py", "a = 1\n")
    repo.write("pkg/b.py", "b = 2\n")
    repo.commit("two files")
    settle(repo)
    index_path = str(repo.path / ".git" / "index")
    index, _ = read_index(index_path)
    os.utime(repo.path / "pkg" / "a.py", (time.time() - 60, time.time() - 60))
    ours = index.with_stat({"pkg/a.py": os.lstat(repo.path / "pkg" / "a.py")})
    run_git(repo, "update-index", "-q", "--refresh")
    theirs, _ = read_index(index_path)
    assert ours.entries_under("pkg") == theirs.entries_under("pkg")


def test_a_damaged_index_under_attributes_is_an_error_that_says_what_to_do(repo):
    """With a ``.gitattributes``, how a pinned file is written depends on attributes that
    libgit2 reads from the index, and it refuses a damaged one: the load stops with an
    error naming ``git fsck``, and the tree comes back."""
    repo.write(".gitattributes", "*.txt text\n")
    shas = build_history(repo, 2)
    settle(repo)
    index_path = repo.path / ".git" / "index"
    damaged = bytearray(index_path.read_bytes())
    damaged[-1] ^= 0xFF
    index_path.write_bytes(bytes(damaged))
    before = repo.snapshot()
    with pytest.raises(ZgitError, match="git fsck"):
        load_source(f"{SOURCE}@{shas[0]}", strategy="checkout")
    assert index_path.read_bytes() == bytes(damaged)
    assert repo.snapshot() == before


def test_an_index_written_with_skip_hash_keeps_its_zero_checksum(repo):
    """``index.skipHash`` (git 2.40, part of ``feature.manyFiles``): git writes zeros
    where the checksum goes and does not check it; zgit's rewrite does the same, instead
    of taking the index for a damaged one."""
    shas = build_history(repo, 2)
    settle(repo)
    index_path = repo.path / ".git" / "index"
    data = index_path.read_bytes()
    index_path.write_bytes(data[:-20] + bytes(20))  # what git >= 2.40 writes with skipHash
    time.sleep(1.05 - time.time() % 1)
    load_source(f"{SOURCE}@{shas[0]}", strategy="checkout")
    after = index_path.read_bytes()
    assert after[-20:] == bytes(20)
    assert after != data[:-20] + bytes(20)  # the stat data of the files put back were refreshed
    assert git_rc(repo, "diff-index", "--quiet", "HEAD").returncode == 0
    assert git_rc(repo, "diff-files", "--quiet").returncode == 0


def test_a_symlinked_index_stays_a_symlink(repo):
    """Some tools keep the index elsewhere and link it: git writes through the link, so
    the refresh must too (it leaves it to libgit2)."""
    shas = build_history(repo, 2)
    settle(repo)
    index_path = repo.path / ".git" / "index"
    elsewhere = repo.path.parent / "index-elsewhere"
    index_path.rename(elsewhere)
    index_path.symlink_to(elsewhere)
    time.sleep(1.05 - time.time() % 1)
    load_source(f"{SOURCE}@{shas[0]}", strategy="checkout")
    assert index_path.is_symlink()
    assert git_rc(repo, "diff-index", "--quiet", "HEAD").returncode == 0
    assert repo.status() == ""
