"""Compiled code of pinned files, cached by blob id under ``.git/zgit/bytecode/``.

A pinned file is a git blob: its id names its content, so code compiled from it never
goes stale, and one entry serves every pin (and every clone's path) that holds the same
blob.  ``PinnedLoader.get_code`` asks here first, for both strategies; a hit skips
reading the blob and compiling it.

An entry is ``<dir>/<id[:2]>/<id[2:]>.<cache tag>[.opt-N].zbc``: an 80-byte header, then
``marshal`` data of the module's code object.  The header holds Python's magic number,
zgit's tag and format, the optimization level, the blob id (raw), the blob's size, the
payload's length, and a keyed BLAKE2b digest of header and payload.  The key is 32
random bytes in ``<dir>/key``, made by the first process that writes an entry.  An
entry is used only when every field matches and the digest verifies *before* a byte is
unmarshalled: a truncated, corrupt, tampered or foreign entry (another blob's, another
Python's, one made with another key) is ignored, compiled afresh and rewritten, never
executed.  The cache is as trusted as ``.git`` itself (whoever can write the key can
write hooks too).

Entries are written atomically (a temporary file in the same directory, then
``os.replace``).  The directory is bounded: a process checks its size on its first write
and every ``PRUNE_EVERY`` writes after, and past ``limit`` bytes removes the entries
used least recently (a hit refreshes an entry's mtime at most once a day) down to three
quarters of it.

``sys.dont_write_bytecode`` (``PYTHONDONTWRITEBYTECODE``) is not consulted: it keeps
``__pycache__`` out of source trees, and this cache lives in ``.git``, where it never
shows in ``git status``.  ``ZGIT_BYTECODE_CACHE=0`` turns the cache off (no read, no
write); nothing is then written under ``.git`` by the memory strategy.  Writing is best
effort: a read-only ``.git`` only costs the compile.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import logging
import marshal
import os
import struct
import sys
import tempfile
import threading
import time
import types
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

try:  # CPython's own helper (what SourceLoader uses after unmarshalling a .pyc)
    from _imp import _fix_co_filename
except ImportError:  # pragma: no cover - other implementations
    _fix_co_filename = None

logger = logging.getLogger(__name__)

DIRECTORY = "bytecode"
KEY_NAME = "key"
SUFFIX = ".zbc"
TAG = b"zgbc"
FORMAT = 1
LIMIT_BYTES = 64 * 1024 * 1024
PRUNE_EVERY = 128
_REFRESH_SECONDS = 24 * 3600
_STALE_TEMP_SECONDS = 3600

# magic, tag, format, optimize, reserved, blob id (raw), blob size, payload length, digest
HEADER = struct.Struct("<4s4sBBH20sQQ32s")
_DIGEST_SIZE = 32
_KEY_SIZE = 32
_SIGNED = HEADER.size - _DIGEST_SIZE  # the header bytes the digest covers (all but itself)

_DISABLED = ("0", "false", "no", "off")


def enabled() -> bool:
    """False when ``ZGIT_BYTECODE_CACHE`` turns the cache off."""
    return os.environ.get("ZGIT_BYTECODE_CACHE", "").strip().lower() not in _DISABLED


def with_filename(code: types.CodeType, path: str) -> types.CodeType:
    """``code`` with ``co_filename`` (its own and its nested code's) set to ``path``: the
    same blob at another pin, or in another clone, has another virtual path."""
    if code.co_filename == path:
        return code
    if _fix_co_filename is not None:
        _fix_co_filename(code, path)
        return code
    return _replace_filename(code, code.co_filename, path)  # pragma: no cover


def _replace_filename(code: types.CodeType, old: str, new: str) -> types.CodeType:  # pragma: no cover
    consts = tuple(
        _replace_filename(c, old, new) if isinstance(c, types.CodeType) and c.co_filename == old else c
        for c in code.co_consts
    )
    return code.replace(co_filename=new, co_consts=consts)


class BytecodeCache:
    """One repository's cache of compiled pinned files (see the module docstring)."""

    def __init__(self, directory: Path, limit: int = LIMIT_BYTES) -> None:
        self.directory = Path(directory)
        self.limit = limit
        self._key: Optional[bytes] = None
        self._key_lock = threading.Lock()
        self._writes = 0
        opt = sys.flags.optimize
        self._optimize = opt
        self._suffix = f".{sys.implementation.cache_tag}{f'.opt-{opt}' if opt else ''}{SUFFIX}"

    # -- paths and the key ---------------------------------------------------------------

    def path_for(self, oid: str) -> Path:
        """Where the entry of blob ``oid`` (40 hex digits) lives."""
        return self.directory / oid[:2] / (oid[2:] + self._suffix)

    def key(self, create: bool) -> Optional[bytes]:
        """The digest key (made when ``create`` and there is none yet); None if unavailable."""
        if self._key is not None:
            return self._key
        with self._key_lock:
            if self._key is not None:
                return self._key
            path = self.directory / KEY_NAME
            try:
                with open(path, "rb") as handle:
                    key = handle.read()
            except FileNotFoundError:
                if not create:
                    return None
                key = self._make_key(path)
            except OSError as exc:
                logger.debug("zgit bytecode cache: cannot read %s: %s", path, exc)
                return None
            if key is not None and len(key) != _KEY_SIZE:
                # Damaged: a new key (every entry made with the old one is then rewritten).
                logger.debug("zgit bytecode cache: %s is not a key; making a new one", path)
                key = self._make_key(path, replace=True) if create else None
            if key is None or len(key) != _KEY_SIZE:
                return None
            self._key = key
            return key

    def _make_key(self, path: Path, replace: bool = False) -> Optional[bytes]:
        # Linked into place, not replaced (unless damaged): two processes creating it at
        # once agree on the first one's key (the other reads it back).
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=".key-", dir=self.directory)
            try:
                os.write(fd, os.urandom(_KEY_SIZE))
                os.close(fd)
                if replace:
                    os.replace(temp, path)
                else:
                    try:
                        os.link(temp, path)
                    except FileExistsError:
                        pass
            finally:
                _unlink_quietly(temp)
            with open(path, "rb") as handle:
                return handle.read()
        except OSError as exc:
            logger.debug("zgit bytecode cache: cannot create %s: %s", path, exc)
            return None

    def _digest(self, key: bytes, signed: bytes, payload) -> bytes:
        hasher = hashlib.blake2b(key=key, digest_size=_DIGEST_SIZE)
        hasher.update(signed)
        hasher.update(payload)
        return hasher.digest()

    # -- reading -------------------------------------------------------------------------

    def get(self, oid: str, blob_size: Callable[[str], Optional[int]]) -> Optional[types.CodeType]:
        """The code compiled from blob ``oid``, or None (no entry, or one that fails any
        check: it is then left for :meth:`put` to overwrite).  ``blob_size(oid)`` gives
        the blob's size as the object database has it, to bind the entry to its source."""
        path = self.path_for(oid)
        try:
            # os-level: a buffered open() makes ten system calls of these four
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            data = os.read(fd, st.st_size + 1)  # one more: a file that grew shows as such
            mtime = st.st_mtime
        except OSError:
            return None
        finally:
            os.close(fd)
        code = self._decode(oid, data, blob_size, path)
        if code is not None and time.time() - mtime > _REFRESH_SECONDS:
            try:
                os.utime(path)  # recently used: the prune keeps it
            except OSError:
                pass
        return code

    def _decode(self, oid: str, data: bytes, blob_size, path: Path) -> Optional[types.CodeType]:
        def reject(why: str) -> None:
            logger.debug("zgit bytecode cache: ignoring %s (%s); compiling afresh", path, why)

        if len(data) < HEADER.size:
            return reject("truncated")
        magic, tag, fmt, optimize, _, raw_oid, size, length, digest = HEADER.unpack_from(data)
        if tag != TAG or fmt != FORMAT:
            return reject("not a zgit bytecode file")
        if magic != importlib.util.MAGIC_NUMBER or optimize != self._optimize:
            return reject("written by another Python or optimization level")
        if raw_oid != bytes.fromhex(oid):
            return reject("another blob's entry")
        if length != len(data) - HEADER.size:
            return reject("truncated or padded payload")
        key = self.key(create=False)
        if key is None:
            return reject("no key")
        view = memoryview(data)
        if not hmac.compare_digest(digest, self._digest(key, view[:_SIGNED], view[HEADER.size:])):
            return reject("digest mismatch: corrupt, tampered, or made with another key")
        if blob_size(oid) != size:
            return reject("the blob's size differs")
        try:
            code = marshal.loads(view[HEADER.size:])
        except (ValueError, EOFError, TypeError) as exc:
            return reject(f"unreadable code: {exc}")
        if not isinstance(code, types.CodeType):
            return reject("not a code object")
        return code

    # -- writing -------------------------------------------------------------------------

    def put(self, oid: str, size: int, code: types.CodeType) -> None:
        """Store ``code``, compiled from blob ``oid`` of ``size`` bytes (best effort)."""
        key = self.key(create=True)
        if key is None:
            return
        try:
            payload = marshal.dumps(code)
        except ValueError:  # pragma: no cover - code objects always marshal
            return
        signed = HEADER.pack(importlib.util.MAGIC_NUMBER, TAG, FORMAT, self._optimize, 0,
                             bytes.fromhex(oid), size, len(payload), b"\0" * _DIGEST_SIZE)[:_SIGNED]
        data = signed + self._digest(key, signed, payload) + payload
        path = self.path_for(oid)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(temp, path)
            except BaseException:
                try:
                    os.unlink(temp)
                except OSError:
                    pass
                raise
        except OSError as exc:
            logger.debug("zgit bytecode cache: cannot write %s: %s", path, exc)
            return
        self._writes += 1
        if self._writes % PRUNE_EVERY == 1:
            self.prune()

    def entries(self) -> List[Tuple[float, int, str]]:
        """``(mtime, size, path)`` of every entry; stale temporary files are removed."""
        out: List[Tuple[float, int, str]] = []
        now = time.time()
        try:
            shards = [d for d in os.scandir(self.directory) if len(d.name) == 2 and d.is_dir()]
        except OSError:
            return out
        for shard in shards:
            try:
                items = list(os.scandir(shard.path))
            except OSError:
                continue
            for item in items:
                try:
                    st = item.stat(follow_symlinks=False)
                except OSError:
                    continue
                if item.name.startswith(".tmp-"):
                    if now - st.st_mtime > _STALE_TEMP_SECONDS:  # left by a killed writer
                        _unlink_quietly(item.path)
                    continue
                if item.name.endswith(SUFFIX):
                    out.append((st.st_mtime, st.st_size, item.path))
        return out

    def prune(self) -> int:
        """Remove the least recently used entries while the cache exceeds its limit
        (down to three quarters of it); returns how many were removed."""
        entries = self.entries()
        total = sum(size for _, size, _ in entries)
        if total <= self.limit:
            return 0
        removed = 0
        for _, size, path in sorted(entries):
            if total <= self.limit * 3 // 4:
                break
            if _unlink_quietly(path):
                total -= size
                removed += 1
        return removed


def _unlink_quietly(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except OSError:
        return False


_caches: Dict[str, BytecodeCache] = {}
_caches_lock = threading.Lock()


def cache_for(git_dir: Path) -> Optional[BytecodeCache]:
    """The cache of the repository whose git directory is ``git_dir`` (None when turned
    off with ``ZGIT_BYTECODE_CACHE=0``)."""
    if not enabled():
        return None
    key = str(git_dir)
    cache = _caches.get(key)
    if cache is None:
        with _caches_lock:
            cache = _caches.setdefault(key, BytecodeCache(Path(git_dir) / "zgit" / DIRECTORY))
    return cache
