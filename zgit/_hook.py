"""The import hook ``import zgit`` installs, kept light: it imports nothing at all.

Pinned modules (``a.b@<sha>.c``) are served by :mod:`zgit.loader.importer`, which needs
git, YAML and file locks -- too much to import on every ``import zgit`` (``zgit --help``,
a pre-commit ``zgit audit``).  :class:`PinnedNameFinder` stands in for its finders,
last on ``sys.meta_path``, so that only imports no other finder could satisfy ever reach
it: a pinned name (say, while unpickling a pinned model), or the real package above a
pinned module directory that is not on ``sys.path`` while a pinned import is underway.
The first such import takes the stand-in out, imports :mod:`zgit.loader` (which installs
the real finders) and hands the name over; from then on the real finders answer.
"""

from __future__ import annotations

import sys


class PinnedNameFinder:
    """Last on ``sys.meta_path`` until it hands over to :mod:`zgit.loader.importer`."""

    @classmethod
    def find_spec(cls, fullname: str, path: object = None, target: object = None) -> object:
        """The spec of a pinned name, or of the real package above a pinned module
        directory (handing over to :mod:`zgit.loader.importer`); None for anything else."""
        if "@" in fullname:
            return _hand_over().PinnedFinder.find_spec(fullname, path, target)
        if path is None and "." not in fullname and _pinned_import_underway(fullname):
            return _hand_over().PinnedParentFinder.find_spec(fullname, path, target)
        return None

    @classmethod
    def invalidate_caches(cls) -> None:
        pass


def _pinned_import_underway(top: str) -> bool:
    """Whether a pinned module below the top-level package ``top`` is being imported (its
    module lock is held): importing ``a.b@<sha>.c`` first imports ``a``.  The real check is
    :func:`zgit.loader.importer._pinned_import_underway`; this one only decides whether to
    hand over.  ``_module_locks`` is private to CPython's import system: see
    docs/identity.md and tests/test_python_internals.py."""
    bootstrap = sys.modules.get("importlib._bootstrap") or sys.modules.get("_frozen_importlib")
    locks = getattr(bootstrap, "_module_locks", None) or {}
    prefix = top + "."
    return any("@" in name and name.startswith(prefix) for name in list(locks))


def _hand_over():  # -> the module zgit.loader.importer
    uninstall()
    from zgit.loader import importer  # installs PinnedFinder and the others

    return importer


def install() -> None:
    """Put :class:`PinnedNameFinder` last on ``sys.meta_path`` (idempotent); nothing once
    :mod:`zgit.loader` has installed the real finders."""
    if "zgit.loader.importer" in sys.modules:
        return
    if PinnedNameFinder not in sys.meta_path:
        sys.meta_path.append(PinnedNameFinder)


def uninstall() -> None:
    """Take :class:`PinnedNameFinder` off ``sys.meta_path`` (if it is there)."""
    try:
        sys.meta_path.remove(PinnedNameFinder)
    except ValueError:  # another thread handed over first
        pass
