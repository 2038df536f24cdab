"""``importlib.resources`` for pinned packages: data files read from the commit's tree."""

from __future__ import annotations

import io
from typing import Any, Iterator

try:
    from importlib.resources.abc import Traversable, TraversableResources
except ImportError:  # Python 3.10: importlib.resources is a module, the ABCs are in importlib.abc
    from importlib.abc import Traversable, TraversableResources  # type: ignore[no-redef]

from zgit.loader.importer import PinnedTree


class PinnedTraversable(Traversable):
    """A file or directory of a pinned module directory, read from git's object database."""

    def __init__(self, tree: PinnedTree, repo_path: str) -> None:
        self._tree = tree
        self._path = repo_path.rstrip("/")

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._path.rsplit("/", 1)[-1]

    def is_dir(self) -> bool:
        return self._path in self._tree.dirs

    def is_file(self) -> bool:
        return self._path in self._tree.entries

    def iterdir(self) -> Iterator["PinnedTraversable"]:
        if not self.is_dir():
            raise NotADirectoryError(self._path)
        prefix = self._path + "/" if self._path else ""
        children = set()
        for path in self._tree.entries:
            if path.startswith(prefix):
                children.add(prefix + path[len(prefix):].split("/", 1)[0])
        for child in sorted(children):
            yield PinnedTraversable(self._tree, child)

    def joinpath(self, *descendants: str) -> "PinnedTraversable":
        path = self._path
        for part in descendants:
            for piece in str(part).split("/"):
                if piece in ("", "."):
                    continue
                if piece == "..":
                    raise ValueError("pinned resources cannot reach above their package")
                path = f"{path}/{piece}" if path else piece
        return PinnedTraversable(self._tree, path)

    def __truediv__(self, child: str) -> "PinnedTraversable":
        return self.joinpath(child)

    def open(self, mode: str = "r", *args: Any, **kwargs: Any):
        if mode not in ("r", "rb"):
            raise ValueError(f"pinned resources are read-only; cannot open with mode {mode!r}")
        if not self.is_file():
            raise FileNotFoundError(f"{self._path} at commit {self._tree.sha}")
        data = self._tree.read(self._path)
        if mode == "rb":
            return io.BytesIO(data)
        return io.TextIOWrapper(io.BytesIO(data), *args, **kwargs)

    def read_bytes(self) -> bytes:
        if not self.is_file():
            raise FileNotFoundError(f"{self._path} at commit {self._tree.sha}")
        return self._tree.read(self._path)

    def __str__(self) -> str:
        return self._tree.virtual_path(self._path)

    def __repr__(self) -> str:
        return f"PinnedTraversable({str(self)!r})"


class PinnedResourceReader(TraversableResources):
    def __init__(self, tree: PinnedTree, repo_dir: str) -> None:
        self._tree = tree
        self._dir = repo_dir

    def files(self) -> PinnedTraversable:
        return PinnedTraversable(self._tree, self._dir)
