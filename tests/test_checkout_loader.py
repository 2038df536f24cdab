"""The loader on real repositories: both strategies, the working tree checked before and after."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import zgit
from zgit import (
    DirtyModuleError,
    LockTimeoutError,
    PinNotFoundError,
    Source,
    SourceError,
    SourceNotFoundError,
    load_source,
)
from tests._project import SOURCE, build_history, write_version

STRATEGIES = ["checkout", "memory"]
MODULE_DIR = "trainers/my_awesome_trainer"


@pytest.fixture(params=STRATEGIES)
def strategy(request):
    return request.param


def _unchanged(repo):
    """Context manager asserting status, index and every file's bytes and mode are kept."""

    class _Check:
        def __enter__(self):
            self.status, self.index, self.files = repo.status(), repo.index_bytes(), repo.snapshot()
            return self

        def __exit__(self, *exc):
            assert repo.status() == self.status
            assert repo.index_bytes() == self.index
            assert repo.snapshot() == self.files
            assert not (repo.path / ".git" / "zgit" / "journal.json").exists()
            return False

    return _Check()


def test_loads_each_pin_and_leaves_the_tree_exactly(repo, strategy):
    shas = build_history(repo, 4)
    with _unchanged(repo):
        for version, sha in enumerate(shas):
            cls = load_source(f"{SOURCE}@{sha}", strategy=strategy)
            assert cls.VERSION == version and cls().version() == (version, version)
            assert cls.__dict__["__zgit_source__"] == f"{SOURCE}@{sha}"
            assert load_source(Source.parse(f"{SOURCE}@{sha}"), strategy=strategy) is cls


def test_working_version_stays_imported_and_pins_coexist(repo, strategy):
    shas = build_history(repo, 3)
    sys.path.insert(0, str(repo.path))
    from trainers.my_awesome_trainer import my_trainer_step as working

    old = load_source(f"{SOURCE}@{shas[0]}", strategy=strategy)
    mid = load_source(f"{SOURCE}@{shas[1]}", strategy=strategy)
    assert (old.VERSION, mid.VERSION, working.MyAwesomeTrainer.VERSION) == (0, 1, 2)
    assert sys.modules["trainers.my_awesome_trainer.my_trainer_step"] is working
    assert old is not mid and issubclass(old, zgit.BaseStep)


def test_exact_materialization_during_the_import(repo):
    """Files added since the pin are absent during the import, deleted ones present, modes kept."""
    probe = textwrap.dedent('''\
        import os, stat
        HERE = os.path.join(os.getcwd(), "trainers", "my_awesome_trainer")
        SEEN = sorted(
            (name, bool(os.stat(os.path.join(HERE, name)).st_mode & stat.S_IXUSR))
            for name in os.listdir(HERE) if name.endswith((".py", ".sh", ".txt"))
        )
        with open(os.path.join(HERE, "data.txt")) as handle:
            DATA = handle.read()
        class Probe:
            pass
        ''')
    repo.write("trainers/__init__.py", "")
    repo.write(f"{MODULE_DIR}/__init__.py", "")
    repo.write(f"{MODULE_DIR}/probe.py", probe)
    repo.write(f"{MODULE_DIR}/old_only.py", "gone later\n")
    repo.write(f"{MODULE_DIR}/run.sh", "#!/bin/sh\n", mode=0o755)
    repo.write(f"{MODULE_DIR}/data.txt", "old data\n")
    repo.write(f"{MODULE_DIR}/sub/deep.py", "X = 1\n")
    pin = repo.commit("pin")
    repo.remove(f"{MODULE_DIR}/old_only.py")
    repo.remove(f"{MODULE_DIR}/sub/deep.py")
    repo.write(f"{MODULE_DIR}/new_file.py", "added later\n")
    (repo.path / MODULE_DIR / "run.sh").chmod(0o644)
    repo.write(f"{MODULE_DIR}/data.txt", "new data\n")
    repo.write(f"{MODULE_DIR}/newdir/x.py", "added later\n")
    repo.commit("head")
    with _unchanged(repo):
        probe_cls = load_source(f"trainers.my_awesome_trainer.probe.Probe@{pin}", strategy="checkout")
    module = sys.modules[probe_cls.__module__]
    assert module.SEEN == [("__init__.py", False), ("data.txt", False), ("old_only.py", False),
                           ("probe.py", False), ("run.sh", True)]
    assert module.DATA == "old data\n"
    assert not (repo.path / MODULE_DIR / "sub").exists()  # the directory made for the pin is gone


def test_exception_in_pinned_module_propagates_and_tree_is_restored(repo, strategy):
    build_history(repo, 1)
    repo.write(f"{MODULE_DIR}/broken.py", "raise RuntimeError('broken at the pin')\nclass X: pass\n")
    pin = repo.commit()
    repo.remove(f"{MODULE_DIR}/broken.py")
    repo.commit()
    with _unchanged(repo):
        with pytest.raises(RuntimeError, match="broken at the pin"):
            load_source(f"trainers.my_awesome_trainer.broken.X@{pin}", strategy=strategy)
    assert not any("broken" in name for name in sys.modules)


def test_keyboard_interrupt_in_pinned_module_restores_the_tree(repo, strategy):
    build_history(repo, 1)
    repo.write(f"{MODULE_DIR}/ctrl_c.py", "raise KeyboardInterrupt\n")
    pin = repo.commit()
    repo.remove(f"{MODULE_DIR}/ctrl_c.py")
    repo.commit()
    with _unchanged(repo):
        with pytest.raises(KeyboardInterrupt):
            load_source(f"trainers.my_awesome_trainer.ctrl_c.X@{pin}", strategy=strategy)


def test_errors(repo, strategy):
    shas = build_history(repo, 2)
    with _unchanged(repo):
        with pytest.raises(PinNotFoundError, match="0" * 40):
            load_source(f"{SOURCE}@{'0' * 40}", strategy=strategy)
        with pytest.raises(SourceNotFoundError, match="no attribute 'Nope'"):
            load_source(f"trainers.my_awesome_trainer.my_trainer_step.Nope@{shas[0]}", strategy=strategy)
        with pytest.raises(SourceNotFoundError, match="does not exist at commit"):
            load_source(f"trainers.my_awesome_trainer.absent.X@{shas[0]}", strategy=strategy)
        with pytest.raises(SourceError):
            load_source("not a source", strategy=strategy)
        with pytest.raises(SourceError, match="package directory"):
            load_source(f"toplevel.X@{shas[0]}", strategy=strategy)
        with pytest.raises(zgit.ConfigError, match="strategy"):
            load_source(f"{SOURCE}@{shas[0]}", strategy="teleport")


def test_checkout_refuses_a_dirty_module_directory(repo):
    shas = build_history(repo, 2)
    repo.write(f"{MODULE_DIR}/scratch.py", "# work in progress\n")
    repo.write(f"{MODULE_DIR}/helper.py", "HELPER_VERSION = 'edited'\n")
    with _unchanged(repo):
        with pytest.raises(DirtyModuleError) as info:
            load_source(f"{SOURCE}@{shas[0]}", strategy="checkout")
        assert info.value.paths == [f"{MODULE_DIR}/helper.py", f"{MODULE_DIR}/scratch.py"]
        assert "memory" in str(info.value)
        # the memory strategy writes nothing, so dirt is no reason to refuse
        assert load_source(f"{SOURCE}@{shas[0]}", strategy="memory").VERSION == 0


def test_strategy_from_config_and_environment(repo, monkeypatch):
    shas = build_history(repo, 2)
    repo.write(".zgit/config.yaml", "loader:\n  strategy: memory\n")
    repo.commit()
    repo.write(f"{MODULE_DIR}/scratch.py", "")  # dirty: only the memory strategy can load
    assert load_source(f"{SOURCE}@{shas[0]}").VERSION == 0
    zgit.loader.forget_loaded()
    monkeypatch.setenv("ZGIT_LOADER_STRATEGY", "checkout")
    with pytest.raises(DirtyModuleError):
        load_source(f"{SOURCE}@{shas[0]}")


def test_stale_bytecode_is_never_run(repo):
    """A pyc written for HEAD within the same second as the checkout is not used."""
    shas = build_history(repo, 2)
    path = repo.path / MODULE_DIR / "helper.py"
    # Same size at both versions, so only the mtime second could tell them apart.
    assert len("HELPER_VERSION = 0\n") == len("HELPER_VERSION = 1\n")
    os.utime(path)  # HEAD's file dated this second, then its bytecode written
    import py_compile

    pyc = py_compile.compile(str(path), invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    assert os.path.exists(pyc)
    cls = load_source(f"{SOURCE}@{shas[0]}", strategy="checkout")
    assert cls().version() == (0, 0)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out = subprocess.run([sys.executable, "-c",
                          "import trainers.my_awesome_trainer.helper as h; print(h.HELPER_VERSION)"],
                         cwd=repo.path, capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "1"


def _run(code, cwd, env=None, **kwargs):
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd,
                            env=dict(os.environ, **(env or {})), **kwargs)


def test_killed_mid_import_then_recover_restores_exactly(repo):
    shas = build_history(repo, 1)
    repo.write(f"{MODULE_DIR}/slow.py", "import time\nopen('started', 'w').close()\ntime.sleep(60)\nclass S: pass\n")
    repo.write(f"{MODULE_DIR}/only_at_pin.py", "")
    pin = repo.commit()
    repo.remove(f"{MODULE_DIR}/slow.py")
    repo.remove(f"{MODULE_DIR}/only_at_pin.py")
    write_version(repo, 7)
    repo.commit()
    before = (repo.status(), repo.snapshot())
    proc = _run(f"import zgit; zgit.load_source('trainers.my_awesome_trainer.slow.S@{pin}')", repo.path)
    deadline = time.time() + 30
    while not (repo.path / "started").exists():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (repo.path / "started").unlink()
    assert (repo.path / MODULE_DIR / "slow.py").exists()  # left behind by the dead process
    out = subprocess.run([sys.executable, "-m", "zgit", "recover"], cwd=repo.path, capture_output=True, text=True)
    if out.returncode != 0 and "No module named zgit.__main__" in out.stderr:
        restored = zgit.recover(repo.path)
    else:
        assert out.returncode == 0, out.stderr
        restored = out.stdout
    assert "slow.py" in str(restored)
    assert (repo.status(), repo.snapshot()) == before
    assert zgit.recover(repo.path) == []  # a second recover has nothing to do


def test_next_load_recovers_a_dead_processes_checkout_by_itself(repo):
    shas = build_history(repo, 3)
    before = (repo.status(), repo.snapshot())
    proc = _run(f"import zgit; zgit.load_source('{SOURCE}@{shas[0]}')", repo.path,
                env={"ZGIT_TEST_KILL_AT": "after-materialize"})
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert repo.status() != before[0]
    assert load_source(f"{SOURCE}@{shas[1]}").VERSION == 1
    assert (repo.status(), repo.snapshot()) == before


def test_lock_timeout_names_the_holder(repo, monkeypatch):
    shas = build_history(repo, 2)
    holder = _run("""
        import sys, time, zgit
        from zgit.loader.checkout import locked
        with locked(zgit.Repository('.').git, 10):
            print('held', flush=True)
            time.sleep(60)
        """, repo.path, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("ZGIT_LOCK_TIMEOUT", "0.2")
        with pytest.raises(LockTimeoutError) as info:
            load_source(f"{SOURCE}@{shas[0]}", strategy="checkout")
        assert f"process {holder.pid}" in str(info.value)
        assert "checkout.lock" in str(info.value)
        assert load_source(f"{SOURCE}@{shas[0]}", strategy="memory").VERSION == 0
    finally:
        holder.kill()
        holder.wait()


def test_four_processes_load_different_pins_at_once(repo):
    shas = build_history(repo, 6)
    before = (repo.status(), repo.snapshot())
    procs = []
    for version, sha in enumerate(shas[:5] * 1):
        procs.append((version, _run(f"""
            import zgit
            for _ in range(3):
                cls = zgit.load_source('{SOURCE}@{sha}', strategy='checkout')
                assert cls().version() == ({version}, {version}), cls().version()
                zgit.loader.forget_loaded()
            print('ok')
            """, repo.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    for version, proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.strip() == "ok", err
    assert (repo.status(), repo.snapshot()) == before


def test_works_whatever_cwd_and_sys_path(repo, tmp_path, monkeypatch):
    shas = build_history(repo, 2)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert str(repo.path) not in sys.path
    cls = load_source(f"{SOURCE}@{shas[0]}", repo=repo.path, strategy="checkout")
    assert cls().version() == (0, 0)


def test_pinned_module_loading_another_pin_while_it_imports(repo, strategy):
    shas = build_history(repo, 2)
    repo.write("pipes/__init__.py", "")
    repo.write("pipes/build.py", textwrap.dedent(f"""\
        import zgit
        TRAINER = zgit.load_source("{SOURCE}@{shas[0]}")
        class Build:
            pass
        """))
    pin = repo.commit()
    repo.write("pipes/build.py", "class Build:\n    pass\n")
    repo.commit()
    with _unchanged(repo):
        build = load_source(f"pipes.build.Build@{pin}", strategy=strategy)
    assert sys.modules[build.__module__].TRAINER.VERSION == 0
