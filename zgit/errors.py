"""Every error zgit raises, one type per failure.

All of them derive from :class:`ZgitError`, and every message says what to do next.
"""

from __future__ import annotations

from typing import Iterable, Sequence


class ZgitError(Exception):
    """Base class of every error zgit raises on purpose."""


class SourceError(ZgitError, ValueError):
    """A source string is malformed, or names something that cannot be pinned."""


class NotARepositoryError(ZgitError):
    """No git work tree was found where one was expected."""


class DirtyModuleError(ZgitError):
    """A module directory differs from HEAD, so the checkout loader refuses to touch it.

    ``paths`` holds the offending files as repository-relative POSIX paths.
    """

    def __init__(self, message: str, paths: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.paths: list[str] = sorted(paths)


class PinNotFoundError(ZgitError):
    """The commit a source is pinned to is not in the repository."""


class SourceNotFoundError(ZgitError, ImportError):
    """The module or attribute a source names does not exist at its pin."""


class VersionMismatchError(ZgitError):
    """The installed distribution differs from the version a source is pinned to."""


class PipelineNotFoundError(ZgitError):
    """No stored pipeline has the requested name.  ``names`` lists those that exist."""

    def __init__(self, message: str, names: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.names: list[str] = list(names)


class ConfigError(ZgitError):
    """A YAML file does not parse or does not fit its schema (names the file and the key)."""


class PipelineNotFoundAmongReadableError(PipelineNotFoundError, ConfigError):
    """No readable pipeline file has the requested name and some files could not be read
    (it may be in one of them).  ``names`` lists the names found; ``paths`` the unreadable
    files.  Both a :class:`PipelineNotFoundError` and a :class:`ConfigError`."""

    def __init__(self, message: str, names: Sequence[str] = (), paths: Iterable[str] = ()) -> None:
        super().__init__(message, names)
        self.paths: list[str] = sorted(paths)


class LockTimeoutError(ZgitError, TimeoutError):
    """Another process held the checkout lock for longer than ``lock_timeout`` seconds."""


class RecoverError(ZgitError):
    """A journal cannot be undone without overwriting work (names the files)."""

    def __init__(self, message: str, paths: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.paths: list[str] = sorted(paths)


class StoreError(ZgitError):
    """The run store cannot be opened or written (names the store and what to do)."""


class RunNotFoundError(ZgitError, KeyError):
    """No recorded run has the requested id (or the prefix given is ambiguous)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ArtifactError(ZgitError):
    """A step output the run store should hold is not there."""


class CorruptArtifactError(ArtifactError):
    """An artifact's bytes do not match its digest: it is never returned."""


class RerunError(ZgitError):
    """A recorded run cannot be re-run (unpinned step, missing commit, missing input)."""


class BundleError(ZgitError):
    """A code bundle does not prove the pin it claims (tampered, truncated or built from
    other objects): it is never installed.  The message names the pin."""


class UnpinnedSourceWarning(UserWarning):
    """A class was left unpinned; the message says why and how to pin it."""


class UncommittedFileWarning(UserWarning):
    """A pinned module directory holds importable files its commit does not have (git
    ignores them: generated modules); a load of the pin cannot import them as they were."""


class VersionMismatchWarning(UserWarning):
    """A distribution pin was loaded although the installed version differs
    (``loader.on_version_mismatch: warn``); the message names both versions and the fix."""
