"""The test matrix: zgit's suite on every supported Python, one nox session per version.

    scripts/test.sh --all-pythons            # every session (sets up .venv with nox first)
    scripts/test.sh --all-pythons -x -k cli  # arguments after the option go to pytest
    .venv/bin/python -m nox -s tests-3.13    # one version
    .venv/bin/python -m nox -t ends          # the oldest and the newest version found (CI)

Each session makes its own virtual environment (``.nox/tests-3-XX``) from that version's
interpreter, installs zgit there editable with its test extra, and runs the suite as
``scripts/test.sh`` does.  An interpreter that is not installed is skipped with a line
that says so, never a failure, and never downloaded.

Interpreters are looked up as ``python3.X`` on ``PATH`` (only one that really runs and is
that version: pyenv's shims answer for versions that are not selected) and then in
pyenv's ``versions`` directory, the newest patch release first.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

import nox

# Keep in step with setup.cfg (python_requires and the classifiers) and the README.
SUPPORTED = ("3.10", "3.11", "3.12", "3.13")

# The suite runs as users run Python, writing bytecode (.ci/run calls nox directly, and
# this machine's environment may say otherwise).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

nox.options.download_python = "never"  # a missing interpreter is skipped, not fetched
nox.options.reuse_venv = "yes"
nox.options.sessions = [f"tests-{version}" for version in SUPPORTED]


def _version_of(python: str) -> Optional[str]:
    """``"3.X"`` of an interpreter, or None when it does not run (a pyenv shim for a
    version that is not selected exits non-zero)."""
    try:
        result = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _pyenv_candidates(version: str) -> List[str]:
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    found = []
    if root.is_dir():
        for entry in root.iterdir():
            match = re.fullmatch(re.escape(version) + r"\.(\d+)", entry.name)
            executable = entry / "bin" / f"python{version}"
            if match and executable.exists():
                found.append((int(match.group(1)), str(executable)))
    return [path for _, path in sorted(found, reverse=True)]


def find_interpreter(version: str) -> Optional[str]:
    """The path of an installed Python ``version`` ("3.X"), or None."""
    on_path = shutil.which(f"python{version}")
    for candidate in ([on_path] if on_path else []) + _pyenv_candidates(version):
        if _version_of(candidate) == version:
            return candidate
    return None


INTERPRETERS: Dict[str, Optional[str]] = {version: find_interpreter(version) for version in SUPPORTED}
_found = [version for version in SUPPORTED if INTERPRETERS[version]]
ENDS = {_found[0], _found[-1]} if _found else set()


def _tests(version: str):
    interpreter = INTERPRETERS[version]

    def tests(session: nox.Session) -> None:
        if interpreter is None:
            session.skip(
                f"Python {version} is not installed (no working python{version} on PATH or "
                "in pyenv's versions)"
            )
        session.install("-e", ".[test]")
        workers = os.environ.get("ZGIT_TEST_WORKERS", "2")
        session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", workers, *session.posargs)

    tests.__doc__ = f"The suite on Python {version} ({interpreter or 'not installed'})."
    return nox.session(
        name=f"tests-{version}",
        # No interpreter: the session makes no environment, and only says it is skipped.
        python=interpreter or False,
        tags=["ends"] if version in ENDS else [],
    )(tests)


for _version in SUPPORTED:
    _tests(_version)
