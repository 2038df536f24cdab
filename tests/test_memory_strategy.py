"""The memory strategy (issue 3): pinned code served from git's object database.

Real repositories built with the git CLI.  The tests that state the common contract of the
loaders run over both strategies with the same expectations; only dirty-directory refusal
and locking differ (the memory strategy writes nothing, so it neither refuses nor locks).
"""

from __future__ import annotations

import importlib
import importlib.resources
import inspect
import os
import pkgutil
import subprocess
import sys
import textwrap
import threading
import traceback

import pytest

import zgit
from zgit import PinNotFoundError, SourceNotFoundError, load_source
from tests._project import SOURCE, build_history, write_version

STRATEGIES = ["checkout", "memory"]
MODULE_DIR = "trainers/my_awesome_trainer"
PACKAGE = "trainers.my_awesome_trainer"


@pytest.fixture(params=STRATEGIES)
def strategy(request):
    return request.param


def _pinned_package(sha: str):
    return sys.modules[f"{PACKAGE}@{sha}"]


def _module_of(obj):
    return sys.modules[obj.__module__]


# -- a module directory whose content differs between the pin and HEAD ----------------------

PROBE_AT_PIN = '''\
"""The probe at the pin."""
from importlib.resources import files

from . import old_only

try:
    from . import new_file
except ImportError:
    NEW_FILE_IMPORTABLE = False
else:
    NEW_FILE_IMPORTABLE = True

DATA = files(__package__).joinpath("data/config.txt").read_text()
OLD = old_only.OLD


def read_later(name):
    return (files(__package__) / "data" / name).read_bytes()


def read_next_to_file(name):
    """``__file__`` is virtual: files next to it are read through the module's loader."""
    import os
    return __loader__.get_data(os.path.join(os.path.dirname(__file__), "data", name))


def read_with_pkgutil(name):
    import pkgutil
    return pkgutil.get_data(__package__, "data/" + name)


class Probe:
    # pinned line marker: PINNED-PROBE
    def fail(self):
        raise ValueError("raised by the pinned probe")  # PINNED-RAISE
'''

PROBE_AT_HEAD = '''\
"""The probe at HEAD: different lines everywhere."""


import os

DATA = "head"
OLD = None


class Probe:
    # working line marker: WORKING-PROBE

    def fail(self):
        raise ValueError("raised by the working probe")  # WORKING-RAISE
'''


def _two_versions(repo):
    """Pin: probe, old_only.py, data/config.txt, data/only_at_pin.bin, sub/deep.py.
    HEAD: old_only.py and sub/ deleted, new_file.py and data/only_at_head.bin added."""
    build_history(repo, 1)
    repo.write(f"{MODULE_DIR}/probe.py", PROBE_AT_PIN)
    repo.write(f"{MODULE_DIR}/old_only.py", "OLD = 'only at the pin'\n")
    repo.write(f"{MODULE_DIR}/data/config.txt", "config at the pin\n")
    repo.write(f"{MODULE_DIR}/data/only_at_pin.bin", b"\x00\x01pin")
    repo.write(f"{MODULE_DIR}/sub/__init__.py", "")
    repo.write(f"{MODULE_DIR}/sub/deep.py", "DEEP = 'pin'\n")
    pin = repo.commit("pin")
    repo.write(f"{MODULE_DIR}/probe.py", PROBE_AT_HEAD)
    repo.remove(f"{MODULE_DIR}/old_only.py")
    repo.remove(f"{MODULE_DIR}/sub/deep.py")
    repo.remove(f"{MODULE_DIR}/sub/__init__.py")
    repo.remove(f"{MODULE_DIR}/data/only_at_pin.bin")
    repo.write(f"{MODULE_DIR}/new_file.py", "NEW = True\n")
    repo.write(f"{MODULE_DIR}/data/config.txt", "config at HEAD\n")
    repo.write(f"{MODULE_DIR}/data/only_at_head.bin", b"head")
    repo.commit("head")
    return pin


def _full_snapshot(root):
    """Every file under ``root`` (``.git/`` included): bytes, mtime in ns, inode, mode."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            with open(full, "rb") as handle:
                data = handle.read()
            out[os.path.relpath(full, root)] = (data, st.st_mtime_ns, st.st_ino, st.st_mode)
    return out


def _status(repo):
    """``git status`` without Python's bytecode caches (this fixture has no .gitignore)."""
    return [line for line in repo.status().splitlines() if "__pycache__" not in line]


def _assert_untouched(before, after):
    """Files present before are byte-, mtime- and inode-identical; nothing removed; the only
    files added are bytecode caches Python itself writes for the real packages *above* the
    module directory (ordinary imports), never anything in the module directory."""
    assert set(before) <= set(after), sorted(set(before) - set(after))
    changed = [path for path in before if before[path] != after[path]]
    assert changed == []
    added = sorted(set(after) - set(before))
    assert all("__pycache__" in path.split(os.sep) and not path.startswith(MODULE_DIR) for path in added), added


# -- the shared contract, over both strategies ---------------------------------------------


def test_exact_materialization_at_the_pin(repo, strategy):
    """Files added since the pin are absent, files deleted since are present, to imports,
    ``importlib.resources`` and ``pkgutil`` alike."""
    pin = _two_versions(repo)
    probe = load_source(f"{PACKAGE}.probe.Probe@{pin}", strategy=strategy)
    module = _module_of(probe)
    assert module.NEW_FILE_IMPORTABLE is False
    assert module.OLD == "only at the pin"
    assert module.DATA == "config at the pin\n"
    assert module.read_later("only_at_pin.bin") == b"\x00\x01pin"
    assert module.read_next_to_file("config.txt") == b"config at the pin\n"
    assert module.read_with_pkgutil("only_at_pin.bin") == b"\x00\x01pin"
    with pytest.raises(FileNotFoundError):
        module.read_later("only_at_head.bin")
    names = {name for _, name, _ in pkgutil.iter_modules(_pinned_package(pin).__path__)}
    assert names == {"helper", "my_trainer_step", "old_only", "probe", "sub"}
    assert importlib.import_module(f"{PACKAGE}@{pin}.sub.deep").DEEP == "pin"


def test_isolation_from_sys_modules_and_coexisting_pins(repo, strategy):
    shas = build_history(repo, 3)
    sys.path.insert(0, str(repo.path))
    from trainers.my_awesome_trainer import helper as working_helper
    from trainers.my_awesome_trainer import my_trainer_step as working

    first = load_source(f"{SOURCE}@{shas[0]}", strategy=strategy)
    second = load_source(f"{SOURCE}@{shas[1]}", strategy=strategy)
    assert (first.VERSION, second.VERSION, working.MyAwesomeTrainer.VERSION) == (0, 1, 2)
    assert (first().version(), second().version()) == ((0, 0), (1, 1))
    assert sys.modules[f"{PACKAGE}.my_trainer_step"] is working
    assert sys.modules[f"{PACKAGE}.helper"] is working_helper and working_helper.HELPER_VERSION == 2
    assert first.__module__ == f"{PACKAGE}@{shas[0]}.my_trainer_step"
    # the same pin again: the same object, whichever strategy asks
    other = "memory" if strategy == "checkout" else "checkout"
    assert load_source(f"{SOURCE}@{shas[0]}", strategy=strategy) is first
    assert load_source(f"{SOURCE}@{shas[0]}", strategy=other) is first
    zgit.loader._loaded.clear()  # even without the per-source cache: the module is reused
    assert load_source(f"{SOURCE}@{shas[0]}", strategy=strategy) is first
    assert first.__dict__["__zgit_source__"] == f"{SOURCE}@{shas[0]}"
    assert second.__dict__["__zgit_source__"] == f"{SOURCE}@{shas[1]}"


def test_errors_are_the_same(repo, strategy, tmp_path):
    shas = build_history(repo, 1)
    repo.write(f"{MODULE_DIR}/broken.py", textwrap.dedent("""\
        try:
            {}["missing"]
        except KeyError as exc:
            raise RuntimeError("broken at the pin") from exc
        class X: pass
        """))
    repo.write(f"{MODULE_DIR}/ctrl_c.py", "raise KeyboardInterrupt\nclass X: pass\n")
    pin = repo.commit()
    repo.remove(f"{MODULE_DIR}/broken.py")
    repo.remove(f"{MODULE_DIR}/ctrl_c.py")
    repo.commit()
    with pytest.raises(PinNotFoundError, match="f" * 40):
        load_source(f"{SOURCE}@{'f' * 40}", strategy=strategy)
    with pytest.raises(SourceNotFoundError, match="absent") as info:
        load_source(f"{PACKAGE}.absent.X@{pin}", strategy=strategy)
    assert pin in str(info.value)
    with pytest.raises(SourceNotFoundError, match="has no attribute 'Nope'") as info:
        load_source(f"{PACKAGE}.my_trainer_step.Nope@{shas[0]}", strategy=strategy)
    assert shas[0] in str(info.value)
    with pytest.raises(RuntimeError, match="broken at the pin") as info:
        load_source(f"{PACKAGE}.broken.X@{pin}", strategy=strategy)
    assert isinstance(info.value.__cause__, KeyError)
    assert not any(name.endswith(".broken") for name in sys.modules)
    with pytest.raises(KeyboardInterrupt):
        load_source(f"{PACKAGE}.ctrl_c.X@{pin}", strategy=strategy)
    # a failed load is not cached: the next attempt runs the module again
    with pytest.raises(RuntimeError, match="broken at the pin"):
        load_source(f"{PACKAGE}.broken.X@{pin}", strategy=strategy)
    assert load_source(f"{SOURCE}@{pin}", strategy=strategy)().version() == (0, 0)


def test_tracebacks_and_getsource_show_the_pinned_lines(repo, strategy):
    pin = _two_versions(repo)
    probe = load_source(f"{PACKAGE}.probe.Probe@{pin}", strategy=strategy)
    source = inspect.getsource(probe)
    assert "PINNED-PROBE" in source and "WORKING" not in source
    assert "PINNED-RAISE" in inspect.getsource(probe.fail)
    assert inspect.getsourcefile(probe) == _module_of(probe).__file__
    with pytest.raises(ValueError) as info:
        probe().fail()
    text = "".join(traceback.format_exception(info.value))
    assert 'raise ValueError("raised by the pinned probe")  # PINNED-RAISE' in text
    assert f"{MODULE_DIR}@{pin}/probe.py" in text
    assert "WORKING" not in text
    # the working file on disk does not change what linecache serves for the pinned path
    repo.write(f"{MODULE_DIR}/probe.py", "\n" * 40)
    import linecache

    linecache.checkcache()
    assert "PINNED-PROBE" in inspect.getsource(probe)
    linecache.clearcache()  # even with the cache emptied, the loader serves the pinned lines
    assert "PINNED-PROBE" in inspect.getsource(probe)
    with pytest.raises(ValueError) as info:
        probe().fail()
    assert "# PINNED-RAISE" in "".join(traceback.format_exception(info.value))


def test_file_says_repository_path_and_pin(repo, strategy):
    shas = build_history(repo, 2)
    cls = load_source(f"{SOURCE}@{shas[0]}", strategy=strategy)
    root = str(zgit.Repository(repo.path).root)
    module = _module_of(cls)
    assert module.__file__ == f"{root}/{MODULE_DIR}@{shas[0]}/my_trainer_step.py"
    package = _pinned_package(shas[0])
    assert package.__file__ == f"{root}/{MODULE_DIR}@{shas[0]}/__init__.py"
    assert package.__path__ == [f"{root}/{MODULE_DIR}@{shas[0]}"]
    assert not os.path.exists(module.__file__)  # virtual: it exists on no disk
    assert module.__spec__.origin == module.__file__
    assert module.__loader__.get_source(module.__name__) == (
        repo.git("show", f"{shas[0]}:{MODULE_DIR}/my_trainer_step.py")
    )


def test_importlib_resources_inside_a_pinned_package(repo, strategy):
    pin = _two_versions(repo)
    probe = load_source(f"{PACKAGE}.probe.Probe@{pin}", strategy=strategy)
    package = _pinned_package(pin)
    root = importlib.resources.files(package)
    data = root / "data"
    assert data.is_dir() and not data.is_file()
    assert sorted(child.name for child in data.iterdir()) == ["config.txt", "only_at_pin.bin"]
    assert (data / "config.txt").read_text() == "config at the pin\n"
    with (data / "only_at_pin.bin").open("rb") as handle:
        assert handle.read() == b"\x00\x01pin"
    with importlib.resources.as_file(data / "config.txt") as path:
        assert open(path).read() == "config at the pin\n"
    assert importlib.resources.files(f"{PACKAGE}@{pin}.sub").joinpath("deep.py").read_text() == "DEEP = 'pin'\n"
    # the working package still reads the working files
    sys.path.insert(0, str(repo.path))
    working = importlib.import_module(PACKAGE)
    assert (importlib.resources.files(working) / "data" / "config.txt").read_text() == "config at HEAD\n"
    assert _module_of(probe).DATA == "config at the pin\n"


def test_pkgutil_lists_the_pinned_modules(repo, strategy):
    pin = _two_versions(repo)
    load_source(f"{PACKAGE}.probe.Probe@{pin}", strategy=strategy)
    package = _pinned_package(pin)
    found = {(info.name, info.ispkg) for info in pkgutil.iter_modules(package.__path__, package.__name__ + ".")}
    assert found == {(f"{PACKAGE}@{pin}.{name}", ispkg) for name, ispkg in [
        ("helper", False), ("my_trainer_step", False), ("old_only", False), ("probe", False), ("sub", True)]}
    walked = {info.name for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")}
    assert f"{PACKAGE}@{pin}.sub.deep" in walked
    assert "new_file" not in str(walked)


# -- memory only -----------------------------------------------------------------------------


@pytest.mark.parametrize("bytecode_cache", ["0", "1"])
def test_memory_touches_no_file_and_loads_a_dirty_directory(repo, monkeypatch, bytecode_cache):
    """Bytes, mtime (ns) and inode of every file of the repository, ``.git/`` included, are
    the same after memory loads, failing ones included; a dirty module directory loads.
    The only files a memory load may add are zgit's compiled-code cache under
    ``.git/zgit/bytecode/`` (off with ``ZGIT_BYTECODE_CACHE=0``: then nothing at all)."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as in a default interpreter
    monkeypatch.setenv("ZGIT_BYTECODE_CACHE", bytecode_cache)
    shas = build_history(repo, 3)
    repo.write(f"{MODULE_DIR}/raises.py", "raise RuntimeError('pinned failure')\n")
    failing = repo.commit()
    repo.remove(f"{MODULE_DIR}/raises.py")
    write_version(repo, 9)
    repo.commit()
    repo.write(f"{MODULE_DIR}/helper.py", "HELPER_VERSION = 'uncommitted edit'\n")
    repo.write(f"{MODULE_DIR}/scratch.py", "# untracked\n")
    status = _status(repo)
    before = _full_snapshot(repo.path)
    for version, sha in enumerate(shas):
        cls = load_source(f"{SOURCE}@{sha}", strategy="memory")
        assert cls().version() == (version, version)
    with pytest.raises(RuntimeError, match="pinned failure"):
        load_source(f"{PACKAGE}.raises.X@{failing}", strategy="memory")
    with pytest.raises(SourceNotFoundError):
        load_source(f"{PACKAGE}.scratch.X@{shas[0]}", strategy="memory")
    with pytest.raises(SourceNotFoundError):
        load_source(f"{PACKAGE}.my_trainer_step.Nope@{shas[1]}", strategy="memory")
    with pytest.raises(PinNotFoundError):
        load_source(f"{SOURCE}@{'e' * 40}", strategy="memory")
    after = _full_snapshot(repo.path)
    cache = os.path.join(".git", "zgit", "bytecode") + os.sep
    if bytecode_cache == "1":
        assert any(path.startswith(cache) for path in after)
        after = {path: value for path, value in after.items() if not path.startswith(cache)}
    _assert_untouched(before, after)
    assert _status(repo) == status
    if bytecode_cache == "0":
        assert not (repo.path / ".git" / "zgit").exists()  # no lock, no journal, not even the directory
    else:
        assert os.listdir(repo.path / ".git" / "zgit") == ["bytecode"]  # no lock, no journal


def _hold_lock(repo):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""\
        import time, zgit
        from zgit.loader.checkout import locked
        with locked(zgit.Repository('.').git, 10):
            print('held', flush=True)
            time.sleep(60)
        """)], cwd=repo.path, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_memory_load_goes_through_while_another_process_holds_the_lock(repo, monkeypatch):
    shas = build_history(repo, 3)
    holder = _hold_lock(repo)
    try:
        monkeypatch.setenv("ZGIT_LOCK_TIMEOUT", "0.1")
        with pytest.raises(zgit.LockTimeoutError):
            load_source(f"{SOURCE}@{shas[0]}", strategy="checkout")
        for version, sha in enumerate(shas):
            assert load_source(f"{SOURCE}@{sha}", strategy="memory")().version() == (version, version)
        assert holder.poll() is None  # still holding it
    finally:
        holder.kill()
        holder.wait()


def test_strategy_per_call_per_repository_and_per_environment(repo, monkeypatch):
    """A dirty module directory tells the strategies apart: checkout refuses it."""
    shas = build_history(repo, 2)
    repo.write(f"{MODULE_DIR}/scratch.py", "")
    target = f"{SOURCE}@{shas[0]}"

    def used():
        zgit.loader.forget_loaded()
        try:
            load_source(target)
        except zgit.DirtyModuleError:
            return "checkout"
        return "memory"

    monkeypatch.delenv("ZGIT_LOADER_STRATEGY", raising=False)
    assert used() == "checkout"  # the default
    repo.write(".zgit/config.yaml", "loader:\n  strategy: memory\n")
    assert used() == "memory"  # per repository
    monkeypatch.setenv("ZGIT_LOADER_STRATEGY", "checkout")
    assert used() == "checkout"  # the environment wins over the file
    zgit.loader.forget_loaded()
    assert load_source(target, strategy="memory").VERSION == 0  # the call wins over both
    repo.write(".zgit/config.yaml", "loader:\n  strategy: checkout\n")
    monkeypatch.setenv("ZGIT_LOADER_STRATEGY", "memory")
    assert used() == "memory"
    zgit.loader.forget_loaded()
    with pytest.raises(zgit.DirtyModuleError):
        load_source(target, strategy="checkout")
    monkeypatch.setenv("ZGIT_LOADER_STRATEGY", "teleport")
    with pytest.raises(zgit.ConfigError, match="ZGIT_LOADER_STRATEGY|strategy"):
        used()


def test_eight_threads_load_eight_pins_at_once(repo):
    """Each of 8 pins is loaded by two threads at once (16 threads); every thread gets the
    right version, including what its methods import later, and both threads of a pin get
    the same class."""
    shas = build_history(repo, 8)
    barrier = threading.Barrier(16)
    results = {}
    errors = []

    def load(index, version, sha):
        try:
            barrier.wait(timeout=30)
            cls = load_source(f"{SOURCE}@{sha}", strategy="memory")
            helper = importlib.import_module(f"{PACKAGE}@{sha}.helper")
            results[index] = (version, cls, cls().version(), helper.HELPER_VERSION)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(i, i % 8, shas[i % 8])) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(results) == 16
    for index, (version, cls, got, helper_version) in results.items():
        assert cls.VERSION == version and got == (version, version) and helper_version == version
        assert results[(index + 8) % 16][1] is cls
        assert cls.__dict__["__zgit_source__"] == f"{SOURCE}@{shas[version]}"
