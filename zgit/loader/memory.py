"""The memory strategy: import a pin straight from git's object database.

Nothing is written, so no lock is taken and a dirty module directory is no reason to
refuse; the pinned modules are served by :mod:`zgit.loader.importer`.
"""

from __future__ import annotations

import importlib
import types


def import_pinned(pinned_name: str) -> types.ModuleType:
    """Import the pinned module ``pinned_name`` (e.g. ``a.b@<sha>.c``) from the object database."""
    return importlib.import_module(pinned_name)
