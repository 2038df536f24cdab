"""zgit's start-up hook as pip installs it: regular and editable (PEP 660) installs.

Each test installs a copy of this checkout into a fresh virtual environment (no pip of
its own, no dependencies: zgit itself cannot be imported there, pygit2 is missing) and
checks what site-packages holds, that interpreters start silently and without importing
zgit, that a pinned object's import then fails with an error that names zgit and what to
do, that a half-removed zgit never breaks an interpreter, and that ``pip uninstall``
removes the hook.  Building a wheel fetches setuptools (build isolation), so these are
slow.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zgit import load_source

ROOT = Path(__file__).resolve().parent.parent
PTH = "zgit-pinned-names.pth"
STARTUP = "_zgit_startup.py"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the files a build reads (pip builds in the source tree: not in ours)."""
    copy = tmp_path_factory.mktemp("zgit-src")
    for name in ("setup.py", "setup.cfg", "pyproject.toml", "README.md", STARTUP):
        shutil.copy2(ROOT / name, copy / name)
    shutil.copytree(ROOT / "zgit", copy / "zgit", ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _run(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)


def _venv_with_zgit(where: Path, project: Path, editable: bool) -> Path:
    """A fresh virtual environment with zgit (only) installed; its site-packages."""
    made = _run(sys.executable, "-m", "venv", "--without-pip", str(where))
    assert made.returncode == 0, made.stderr
    python = where / "bin" / "python"
    install = ["install", "--no-deps", "--disable-pip-version-check", "--no-input", "-q"]
    target = ["-e", str(project)] if editable else [str(project)]
    out = _run(sys.executable, "-m", "pip", "--python", str(python), *install, *target)
    unreachable = ("No matching distribution found for setuptools", "Failed to establish a new connection")
    if out.returncode != 0 and any(sign in out.stderr for sign in unreachable):
        pytest.skip(f"cannot build a wheel here (no access to the package index): {out.stderr[-300:]}")
    assert out.returncode == 0, out.stdout + out.stderr
    found = _run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    return Path(found.stdout.strip())


def _record(site: Path) -> list:
    (dist_info,) = site.glob("zgit-*.dist-info")
    return [line.split(",")[0] for line in (dist_info / "RECORD").read_text().splitlines()]


@pytest.fixture
def pickled(repo, tmp_path) -> tuple:
    """A pickled instance of a class pinned in a small repository."""
    repo.write("pkg/__init__.py", "")
    repo.write("pkg/mod/__init__.py", "")
    repo.write("pkg/mod/thing.py", "class Thing:\n    pass\n")
    sha = repo.commit("thing")
    Thing = load_source(f"pkg.mod.thing.Thing@{sha}", strategy="memory")
    path = tmp_path / "thing.pkl"
    path.write_bytes(pickle.dumps(Thing()))
    return path, f"pkg.mod@{sha}"


UNPICKLE = "import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))"


@pytest.mark.parametrize("editable", [False, True], ids=["regular", "editable"])
def test_install_uninstall_and_half_removed_zgit(project, pickled, repo, tmp_path, editable):
    site = _venv_with_zgit(tmp_path / "venv", project, editable)
    python = str(tmp_path / "venv" / "bin" / "python")

    # installed, listed for uninstall, with the bytecode pip compiled
    assert (site / PTH).read_text().startswith("import ")
    assert (site / STARTUP).read_bytes() == (ROOT / STARTUP).read_bytes()
    record = _record(site)
    assert PTH in record and STARTUP in record
    assert list((site / "__pycache__").glob("_zgit_startup.*.pyc"))

    # every interpreter starts silently with the hook loaded from site-packages, zgit not imported
    probe = "import sys; print(sys.modules['_zgit_startup'].__file__, 'zgit' in sys.modules)"
    out = _run(python, "-c", probe)
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout.split() == [str(site / STARTUP), "False"]

    # a pinned name: the hook imports zgit, which fails here (pygit2 is missing)
    path, pinned = pickled
    out = _run(python, "-c", UNPICKLE, str(path), cwd=repo.path)
    last = out.stderr.strip().splitlines()[-1]
    assert out.returncode != 0 and last.startswith("ModuleNotFoundError: No module named"), out.stderr
    assert pinned in last and "pinned by zgit" in last and "importing zgit failed" in last
    assert "Install zgit in this environment (pip install zgit" in last

    # half removed: zgit's package gone, the hook left behind
    if editable:
        for leftover in site.glob("__editable__*zgit*"):
            leftover.unlink()
    else:
        shutil.rmtree(site / "zgit")
    out = _run(python, "-c", "print('ok')")
    assert (out.returncode, out.stdout, out.stderr) == (0, "ok\n", "")
    out = _run(python, "-c", UNPICKLE, str(path), cwd=repo.path)
    last = out.stderr.strip().splitlines()[-1]
    assert "importing zgit failed here (ModuleNotFoundError: No module named 'zgit')" in last, out.stderr

    # the .pth file left alone, its module gone: interpreters still start silently
    (site / STARTUP).unlink()
    for cached in (site / "__pycache__").glob("_zgit_startup.*"):
        cached.unlink()
    out = _run(python, "-c", "print('ok')")
    assert (out.returncode, out.stdout, out.stderr) == (0, "ok\n", "")

    # pip uninstall removes what is left of the hook
    out = _run(sys.executable, "-m", "pip", "--python", python, "uninstall", "-y", "-q", "zgit")
    assert out.returncode == 0, out.stderr
    assert not (site / PTH).exists()
    assert not site.exists() or not [p for p in os.listdir(site) if "zgit" in p]  # (pip removes it empty)
