"""Fixtures of the reliability suite."""

from __future__ import annotations

import sys

import pytest

from tests.reliability._util import Repo


@pytest.fixture
def fresh_loader():
    """Pins loaded by the test are forgotten after it (the same sha may come from another
    test's repository next, and this one's may be gone)."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if "@" in name:
            sys.modules.pop(name, None)
    from zgit.loader import forget_loaded

    forget_loaded()


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """An empty git repository as the current directory; pinned imports are undone after."""
    for name in ("ZGIT_LOADER_STRATEGY", "ZGIT_LOCK_TIMEOUT", "ZGIT_TEST_KILL_AT", "ZGIT_FSYNC"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "project"
    repository = Repo(path)
    monkeypatch.chdir(path)
    before = set(sys.modules)
    saved_path = list(sys.path)
    yield repository
    sys.path[:] = saved_path
    root = str(path)
    for name in set(sys.modules) - before:
        module = sys.modules.get(name)
        where = str(getattr(module, "__file__", "") or "") + str(getattr(module, "__path__", ""))
        if "@" in name or root in where:
            sys.modules.pop(name, None)
    from zgit.loader import forget_loaded

    forget_loaded()
