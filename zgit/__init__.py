"""zgit: make the classes of ML pipelines reproducible by git commit.

Importing zgit installs its import hook, so that pinned modules (names such as
``a.b@<sha>.c``) can be brought back, e.g. when unpickling a pinned model; and it starts
noting what each module file was on disk when it was imported, so that a pin at HEAD
names the code in memory (see :mod:`zgit.imported`).

Importing zgit is light (the error types and the hooks): every other public name is
imported on first use (PEP 562), so that a command line or a pre-commit hook that needs
no git, YAML or file locks does not pay for them.
"""

# First, so that every import after this one is noted (see zgit/imported.py).
from zgit import imported as _imported

_imported.install()

import importlib  # noqa: E402
from typing import TYPE_CHECKING, List  # noqa: E402

from zgit import _hook  # noqa: E402
from zgit._version import __version__  # noqa: E402
from zgit.errors import (
    ArtifactError,
    BundleError,
    ConfigError,
    CorruptArtifactError,
    DirtyModuleError,
    LockTimeoutError,
    NotARepositoryError,
    PinNotFoundError,
    PipelineNotFoundError,
    RecoverError,
    RerunError,
    RunNotFoundError,
    SourceError,
    SourceNotFoundError,
    StoreError,
    UnpinnedSourceWarning,
    VersionMismatchError,
    VersionMismatchWarning,
    ZgitError,
)

_hook.install()

# public name -> the module that defines it, imported when the name is first used
_LAZY = {
    "BaseStep": "zgit.pipeline",
    "Pipeline": "zgit.pipeline",
    "Repository": "zgit.repository",
    "Source": "zgit.source",
    "load_source": "zgit.loader",
    "recover": "zgit.loader",
    "resolve_source": "zgit.resolver",
}

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from zgit.loader import load_source, recover
    from zgit.pipeline import BaseStep, Pipeline
    from zgit.repository import Repository
    from zgit.resolver import resolve_source
    from zgit.source import Source

__all__ = [
    "__version__",
    "ArtifactError",
    "BundleError",
    "BaseStep",
    "ConfigError",
    "CorruptArtifactError",
    "DirtyModuleError",
    "LockTimeoutError",
    "NotARepositoryError",
    "PinNotFoundError",
    "Pipeline",
    "PipelineNotFoundError",
    "RecoverError",
    "Repository",
    "RerunError",
    "RunNotFoundError",
    "Source",
    "SourceError",
    "SourceNotFoundError",
    "StoreError",
    "UnpinnedSourceWarning",
    "VersionMismatchError",
    "VersionMismatchWarning",
    "ZgitError",
    "load_source",
    "recover",
    "resolve_source",
]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zgit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next use is a plain attribute lookup
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_LAZY))
