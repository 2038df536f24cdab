"""The compiled-code cache of pinned blobs (zgit/loader/bytecode.py), under both strategies.

A warm cache skips the compile and still shows the pinned source everywhere; a corrupt,
tampered or foreign entry is never executed: it is ignored, compiled afresh and rewritten.
"""

from __future__ import annotations

import builtins
import importlib.util
import inspect
import linecache
import marshal
import os
import sys
import traceback

import pytest

from zgit import load_source
from zgit.loader import bytecode, forget_loaded, importer

STRATEGIES = ["checkout", "memory"]
MODULE_DIR = "pkg/mod"
PACKAGE = "pkg.mod"

STEP = '''\
from .helper import helper_version

VERSION = {v}


class Step:
    version = VERSION

    def helper(self):
        return helper_version()

    def fail(self):
        raise ValueError("pinned failure at version {v}")
'''
HELPER = "def helper_version():\n    return 'helper'\n"


@pytest.fixture(params=STRATEGIES)
def strategy(request):
    return request.param


@pytest.fixture(autouse=True)
def _cache_on(monkeypatch):
    monkeypatch.delenv("ZGIT_BYTECODE_CACHE", raising=False)


@pytest.fixture
def pins(repo):
    """Two commits of the module directory; the helper is the same blob in both."""
    repo.write(".gitignore", "__pycache__/\n")
    repo.write("pkg/__init__.py", "")
    repo.write(f"{MODULE_DIR}/__init__.py", "")
    repo.write(f"{MODULE_DIR}/helper.py", HELPER)
    shas = []
    for v in (1, 2):
        repo.write(f"{MODULE_DIR}/step.py", STEP.format(v=v))
        shas.append(repo.commit(f"v{v}"))
    return shas


def _oid(repo, sha, path):
    return repo.git("rev-parse", f"{sha}:{path}").strip()


def _entry(repo, sha, path):
    return bytecode.cache_for(repo.path / ".git").path_for(_oid(repo, sha, path))


def _count_compiles(monkeypatch):
    calls = []
    real = builtins.compile

    def counting(source, filename, *args, **kwargs):
        calls.append(filename)
        return real(source, filename, *args, **kwargs)

    monkeypatch.setattr(importer, "compile", counting, raising=False)
    return calls


@pytest.mark.parametrize("dont_write_bytecode", [True, False])
def test_a_warm_cache_skips_the_compile(repo, pins, strategy, monkeypatch, dont_write_bytecode):
    """The first load compiles and writes an entry per file; after forget_loaded the same
    load compiles nothing.  PYTHONDONTWRITEBYTECODE does not matter: the cache is in .git."""
    monkeypatch.setattr(sys, "dont_write_bytecode", dont_write_bytecode)
    compiles = _count_compiles(monkeypatch)
    status = repo.status()
    step = load_source(f"{PACKAGE}.step.Step@{pins[0]}", strategy=strategy)
    assert step.version == 1 and step().helper() == "helper"
    assert len(compiles) == 3  # __init__, step, helper
    for name in ("__init__", "step", "helper"):
        assert _entry(repo, pins[0], f"{MODULE_DIR}/{name}.py").is_file()
    forget_loaded()
    compiles.clear()
    again = load_source(f"{PACKAGE}.step.Step@{pins[0]}", strategy=strategy)
    assert again is not step and again.version == 1 and again().helper() == "helper"
    assert compiles == []
    assert repo.status() == status


def test_cached_code_shows_the_pinned_source(repo, pins, strategy, monkeypatch):
    """Loaded from the cache: co_filename is the pin's virtual path, and tracebacks,
    ``inspect`` and ``linecache`` show the pinned lines, not the working file's."""
    source = f"{PACKAGE}.step.Step@{pins[0]}"
    load_source(source, strategy=strategy)
    forget_loaded()
    compiles = _count_compiles(monkeypatch)
    step = load_source(source, strategy=strategy)
    assert compiles == []
    virtual = f"{repo.path.resolve()}/{MODULE_DIR}@{pins[0]}/step.py"
    assert step.fail.__code__.co_filename == virtual
    assert inspect.getsourcefile(step) == virtual
    assert "pinned failure at version 1" in inspect.getsource(step)
    assert any("version 1" in line for line in linecache.getlines(virtual))
    try:
        step().fail()
    except ValueError:
        text = traceback.format_exc()
    assert 'raise ValueError("pinned failure at version 1")' in text
    assert virtual in text


def test_one_blob_serves_every_pin_under_its_own_path(repo, pins, strategy, monkeypatch):
    """The helper (and ``__init__``) is one blob in both commits: one entry, compiled
    once, and each pin's code names its own virtual path."""
    first = load_source(f"{PACKAGE}.step.Step@{pins[0]}", strategy=strategy)
    compiles = _count_compiles(monkeypatch)
    second = load_source(f"{PACKAGE}.step.Step@{pins[1]}", strategy=strategy)
    assert [os.path.basename(c) for c in compiles] == ["step.py"]  # not the helper
    assert (first.version, second.version) == (1, 2)
    root = repo.path.resolve()
    for cls, sha in ((first, pins[0]), (second, pins[1])):
        helper = sys.modules[f"{PACKAGE}@{sha}.helper"]
        assert helper.helper_version.__code__.co_filename == f"{root}/{MODULE_DIR}@{sha}/helper.py"


def _header(oid: str, size: int, payload: bytes, magic: bytes = importlib.util.MAGIC_NUMBER) -> bytes:
    return bytecode.HEADER.pack(magic, bytecode.TAG, bytecode.FORMAT, sys.flags.optimize, 0,
                                bytes.fromhex(oid), size, len(payload), b"\0" * 32)


def _signed(key: bytes, header: bytes, payload: bytes) -> bytes:
    cache = bytecode.BytecodeCache(os.devnull)
    signed = header[: bytecode.HEADER.size - 32]
    return signed + cache._digest(key, signed, payload) + payload


def _evil_code(marker) -> bytes:
    """Code that, if it ever ran as the module, would write ``marker``."""
    return marshal.dumps(compile(f"open({str(marker)!r}, 'w').write('executed')\nVERSION = 666\n",
                                 "<evil>", "exec"))


def _tampered(repo, sha, path, marker):
    """Forged entries for ``path`` at ``sha``, each with a header that looks right."""
    oid = _oid(repo, sha, path)
    size = len(repo.git("cat-file", "blob", oid).encode())
    key = (repo.path / ".git" / "zgit" / "bytecode" / "key").read_bytes()
    evil = _evil_code(marker)
    good = _entry(repo, sha, path).read_bytes()
    other_oid = _oid(repo, sha, f"{MODULE_DIR}/helper.py")
    other = _entry(repo, sha, f"{MODULE_DIR}/helper.py").read_bytes()
    return {
        # the payload swapped, digest left as it was: the digest does not match
        "payload swapped": good[: bytecode.HEADER.size] + evil,
        # a digest computed the obvious ways (no key, another key): still no match
        "unkeyed digest": _signed(b"\0" * 32, _header(oid, size, evil), evil),
        "another key": _signed(os.urandom(32), _header(oid, size, evil), evil),
        # another Python's magic number, properly signed
        "foreign magic": _signed(key, _header(oid, size, evil, magic=b"\x00\x00\r\n"), evil),
        # another blob's genuine entry under this blob's name
        "another blob's entry": other if other_oid != oid else b"",
        # a genuine digest over bytes that are not marshal data: marshal's error is caught
        "not marshal data": _signed(key, _header(oid, size, b"\xff" * 64), b"\xff" * 64),
        # a genuine digest, the wrong source size
        "wrong size": _signed(key, _header(oid, size + 1, evil), evil),
        "truncated": good[: len(good) // 2],
        "empty": b"",
        "garbage": os.urandom(300),
    }


@pytest.mark.parametrize("case", [
    "payload swapped", "unkeyed digest", "another key", "foreign magic", "another blob's entry",
    "not marshal data", "wrong size", "truncated", "empty", "garbage",
])
def test_a_tampered_or_foreign_entry_is_never_executed(repo, pins, strategy, tmp_path, case):
    """An entry that fails any check is ignored: the module is compiled from the blob
    (the forged code never runs: it would write a file), and the entry is rewritten."""
    marker = tmp_path / "executed"
    step_file = f"{MODULE_DIR}/step.py"
    source = f"{PACKAGE}.step.Step@{pins[0]}"
    load_source(source, strategy=strategy)
    forget_loaded()
    entry = _entry(repo, pins[0], step_file)
    forged = _tampered(repo, pins[0], step_file, marker)[case]
    entry.write_bytes(forged)
    status = repo.status()

    step = load_source(source, strategy=strategy)
    assert step.version == 1 and step().helper() == "helper"
    assert not marker.exists()
    assert sys.modules[f"{PACKAGE}@{pins[0]}.step"].VERSION == 1
    assert entry.read_bytes() != forged
    # the rewritten entry is genuine again: the next load uses it
    assert bytecode.cache_for(repo.path / ".git")._decode(
        _oid(repo, pins[0], step_file), entry.read_bytes(), lambda oid: _size(repo, oid), entry
    ) is not None
    assert repo.status() == status


def _size(repo, oid):
    return int(repo.git("cat-file", "-s", oid).strip())


def test_a_genuine_entry_for_the_blob_is_what_runs(repo, pins, tmp_path):
    """The counter-check of the test above: the cache is really read -- an entry signed
    with the repository's key and bound to the blob is executed as the module."""
    marker = tmp_path / "executed"
    step_file = f"{MODULE_DIR}/step.py"
    load_source(f"{PACKAGE}.step.Step@{pins[0]}", strategy="memory")
    forget_loaded()
    oid = _oid(repo, pins[0], step_file)
    key = (repo.path / ".git" / "zgit" / "bytecode" / "key").read_bytes()
    code = marshal.dumps(compile("VERSION = 'from the cache'\nclass Step:\n    pass\n", "x", "exec"))
    _entry(repo, pins[0], step_file).write_bytes(_signed(key, _header(oid, _size(repo, oid), code), code))
    load_source(f"{PACKAGE}.step.Step@{pins[0]}", strategy="memory")
    assert sys.modules[f"{PACKAGE}@{pins[0]}.step"].VERSION == "from the cache"
    assert not marker.exists()


def test_an_unwritable_cache_costs_only_the_compile(repo, pins, strategy):
    """The cache directory cannot be made (a file is in the way): loads work, nothing is
    cached, and the file is left alone."""
    state = repo.path / ".git" / "zgit"
    state.mkdir(exist_ok=True)
    (state / "bytecode").write_text("not a directory")
    step = load_source(f"{PACKAGE}.step.Step@{pins[0]}", strategy=strategy)
    assert step.version == 1
    assert (state / "bytecode").read_text() == "not a directory"


def test_the_switch_turns_the_cache_off(repo, pins, strategy, monkeypatch):
    monkeypatch.setenv("ZGIT_BYTECODE_CACHE", "0")
    compiles = _count_compiles(monkeypatch)
    for _ in range(2):
        assert load_source(f"{PACKAGE}.step.Step@{pins[0]}", strategy=strategy).version == 1
        forget_loaded()
    assert len(compiles) == 6
    assert not (repo.path / ".git" / "zgit" / "bytecode").exists()


def test_the_cache_is_bounded_least_recently_used_first(tmp_path):
    """Past its limit the cache removes the entries used least recently, down to three
    quarters of the limit; stale temporary files of killed writers go too."""
    cache = bytecode.BytecodeCache(tmp_path / "bytecode", limit=10_000)
    code = compile("X = " + repr("x" * 900), "<m>", "exec")
    oids = [f"{i:02x}" + "0" * 38 for i in range(30)]
    for age, oid in enumerate(oids):
        cache.put(oid, 1, code)
        os.utime(cache.path_for(oid), (1_000_000 + age, 1_000_000 + age))
    stale = cache.path_for(oids[0]).parent / ".tmp-left-by-a-killed-writer"
    stale.write_bytes(b"x")
    os.utime(stale, (1, 1))
    size = os.path.getsize(cache.path_for(oids[0]))
    assert cache.prune() > 0
    kept = [oid for oid in oids if cache.path_for(oid).exists()]
    assert sum(os.path.getsize(cache.path_for(o)) for o in kept) <= 7_500
    assert kept == oids[len(oids) - len(kept):]  # the newest survive
    assert len(kept) == 7_500 // size
    assert not stale.exists()
    assert cache.get(kept[-1], lambda oid: 1) is not None


def test_every_write_is_atomic_and_prunes_now_and_then(tmp_path, monkeypatch):
    """Writes leave no temporary files; the first write of a process and every
    PRUNE_EVERY-th after check the size."""
    monkeypatch.setattr(bytecode, "PRUNE_EVERY", 4)
    cache = bytecode.BytecodeCache(tmp_path / "bytecode", limit=1)
    code = compile("X = 1", "<m>", "exec")
    cache.put("ab" + "1" * 38, 5, code)
    assert not cache.path_for("ab" + "1" * 38).exists()  # pruned at once: over the limit
    for i in range(3):
        cache.put("ab" + str(i) * 38, 5, code)
    assert len(list((tmp_path / "bytecode" / "ab").iterdir())) == 3
    cache.put("ab" + "9" * 38, 5, code)  # the 5th write prunes
    assert list((tmp_path / "bytecode" / "ab").iterdir()) == []


def test_a_damaged_key_is_replaced_and_old_entries_are_rewritten(repo, pins, strategy):
    """A key file of the wrong length: a new key is made, entries signed with the old one
    fail their check and are rewritten, and loads go on."""
    load_source(f"{PACKAGE}.step.Step@{pins[0]}", strategy=strategy)
    forget_loaded()
    bytecode._caches.clear()  # a new process: the key is read again
    key = repo.path / ".git" / "zgit" / "bytecode" / "key"
    entry = _entry(repo, pins[0], f"{MODULE_DIR}/step.py")
    old_entry = entry.read_bytes()
    key.write_bytes(b"short")
    assert load_source(f"{PACKAGE}.step.Step@{pins[0]}", strategy=strategy).version == 1
    assert len(key.read_bytes()) == 32
    assert entry.read_bytes() != old_entry
    assert not [p for p in key.parent.iterdir() if p.name.startswith(".key-")]


def test_blob_size_reads_the_object_header(repo, pins):
    from zgit.gitrepo import open_repo

    git = open_repo(repo.path)
    oid = _oid(repo, pins[0], f"{MODULE_DIR}/step.py")
    assert git.blob_size(oid) == _size(repo, oid)
    assert git.blob_size("0" * 40) is None  # no such object
    assert git.blob_size(_oid(repo, pins[0], MODULE_DIR)) is None  # a tree, not a blob
