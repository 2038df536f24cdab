"""zgit: make the classes of ML pipelines reproducible by git commit.

Importing zgit installs its import hook, so that pinned modules (names such as
``a.b@<sha>.c``) can be brought back, e.g. when unpickling a pinned model.
"""

from zgit._version import __version__
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
