"""The :class:`Source` value: ``module.Attribute@pin``, parsed and printed round-trip."""

from __future__ import annotations

import functools
import keyword
import re
from dataclasses import dataclass, field
from typing import Literal, Optional

from zgit.errors import SourceError

_SHA_RE = re.compile(r"[0-9a-f]{40}")
_DIST_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.]*[A-Za-z0-9])?")
# A PEP 440-ish version: starts with a digit, then letters, digits, dots, '+', '!' and '-'.
_VERSION_RE = re.compile(r"[0-9][A-Za-z0-9.+!\-]*")

SourceKind = Literal["git", "dist", "unpinned"]


def _check_identifier(part: str, text: str) -> None:
    if not part.isidentifier() or keyword.iskeyword(part):
        raise SourceError(
            f"bad source {text!r}: {part!r} is not a Python identifier; "
            "write sources as 'package.module.Class@pin'"
        )


def normalize_dist_name(name: str) -> str:
    """Return the pin spelling of a distribution name: PEP 503-normalized, ``-`` as ``_``."""
    return re.sub(r"[-_.]+", "-", name).lower().replace("-", "_")


@dataclass(frozen=True)
class Source:
    """Where a class (or function) comes from, and which version of it.

    ``module`` is a dotted module path, ``attribute`` the name in that module, ``pin``
    the text after ``@`` (a 40-hex commit, ``<dist>_<version>``) or ``None``.
    """

    module: str
    attribute: str
    pin: Optional[str] = None
    kind: SourceKind = field(init=False, compare=False)
    sha: Optional[str] = field(init=False, compare=False, default=None)
    distribution: Optional[str] = field(init=False, compare=False, default=None)
    version: Optional[str] = field(init=False, compare=False, default=None)

    def __post_init__(self) -> None:
        text = f"{self.module}.{self.attribute}" + (f"@{self.pin}" if self.pin is not None else "")
        for part in self.module.split("."):
            _check_identifier(part, text)
        _check_identifier(self.attribute, text)
        set_ = object.__setattr__
        if self.pin is None:
            set_(self, "kind", "unpinned")
        elif _SHA_RE.fullmatch(self.pin):
            set_(self, "kind", "git")
            set_(self, "sha", self.pin)
        else:
            name, sep, version = self.pin.rpartition("_")
            if not sep or not _DIST_NAME_RE.fullmatch(name) or not _VERSION_RE.fullmatch(version):
                raise SourceError(
                    f"bad pin {self.pin!r} in source {text!r}: a pin is a commit as exactly "
                    "40 lowercase hex digits, or '<distribution>_<version>' such as 'zgit_0.1.0'"
                )
            set_(self, "kind", "dist")
            set_(self, "distribution", name)
            set_(self, "version", version)

    @classmethod
    def parse(cls, text: str) -> "Source":
        """Parse ``module.Attribute[@pin]``; raise :class:`SourceError` naming the bad part."""
        if not isinstance(text, str):
            raise SourceError(f"a source must be a string, not {type(text).__name__}")
        return _parse(text)

    @property
    def import_path(self) -> str:
        """``module.Attribute`` without the pin."""
        return f"{self.module}.{self.attribute}"

    def with_pin(self, pin: Optional[str]) -> "Source":
        """The same object at another pin (``None`` for unpinned)."""
        return Source(self.module, self.attribute, pin)

    def __str__(self) -> str:
        return self.import_path if self.pin is None else f"{self.import_path}@{self.pin}"


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> Source:
    if text != text.strip() or not text:
        raise SourceError(f"bad source {text!r}: empty, or surrounded by whitespace")
    path, sep, pin = text.partition("@")
    if sep and not pin:
        raise SourceError(f"bad source {text!r}: nothing after '@'; remove it or add a pin")
    if "@" in pin:
        raise SourceError(f"bad source {text!r}: more than one '@'")
    module, dot, attribute = path.rpartition(".")
    if not dot or not module:
        raise SourceError(
            f"bad source {text!r}: expected 'module.Attribute', e.g. 'trainers.steps.Trainer'"
        )
    return Source(module, attribute, pin if sep else None)
