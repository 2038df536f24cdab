"""Git's index file (``.git/index``), read for its stat cache: no pygit2 needed.

libgit2 does not expose the stat data of index entries, so the file is parsed here.
The format (Documentation/gitformat-index.txt in git's sources):

* header: ``DIRC``, version (2, 3 or 4), number of entries, all big-endian 32-bit;
* each entry: ctime s/ns, mtime s/ns, dev, ino, mode, uid, gid, size (ten 32-bit fields,
  git keeps only their low 32 bits), the object id (20 bytes, or 32 in a SHA-256
  repository), 16 bits of flags (assume-valid 0x8000, extended 0x4000, stage 0x3000,
  name length 0x0fff), from version 3 on 16 more flag bits when "extended" is set
  (skip-worktree 0x4000, intent-to-add 0x2000), then the path:
  - versions 2 and 3: NUL-terminated, the entry padded with NULs to a multiple of 8 bytes;
  - version 4: prefix-compressed against the previous entry's path (a varint N: drop N
    bytes from the end of the previous path, then a NUL-terminated suffix), no padding;
* extensions, then a checksum.  Extensions are skipped, except that a split index
  (``link``: most entries live in a shared index file) is reported as unusable: callers
  then compare every file by content, which is always correct, only slower.

Entries are sorted by path (bytes), so the entries of one directory are contiguous.  The
parse records each entry's path and offset; the stat fields of an entry are decoded when
a directory containing it is asked for.  Nothing here trusts the file: a malformed index
raises :class:`IndexFormatError`, and the caller falls back to reading file contents.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import stat
import struct
from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

_HEADER = struct.Struct(">4sII")
_STAT = struct.Struct(">10I")
_FLAGS = struct.Struct(">H")
_STAT_BYTES = 40
_CHECKPOINT = 1 << 16  # the checksum's state is kept every 64 KiB (see GitIndex.with_stat)

FLAG_ASSUME_VALID = 0x8000
FLAG_EXTENDED = 0x4000
FLAG_STAGE = 0x3000
FLAG_NAME_MASK = 0x0FFF
XFLAG_SKIP_WORKTREE = 0x4000
XFLAG_INTENT_TO_ADD = 0x2000

EMPTY_BLOB_SHA1 = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


class IndexFormatError(ValueError):
    """The index file is not one this parser understands (or is damaged)."""


class IndexChecksumError(IndexFormatError):
    """The index file's checksum does not match its content: it is damaged."""


class IndexEntry(NamedTuple):
    """One index entry: git's stat data (low 32 bits), mode, object id and flags."""

    ctime_s: int
    ctime_ns: int
    mtime_s: int
    mtime_ns: int
    dev: int
    ino: int
    mode: int
    uid: int
    gid: int
    size: int
    oid: str
    flags: int
    xflags: int

    @property
    def stage(self) -> int:
        return (self.flags & FLAG_STAGE) >> 12

    @property
    def assume_unchanged(self) -> bool:
        return bool(self.flags & FLAG_ASSUME_VALID)

    @property
    def skip_worktree(self) -> bool:
        return bool(self.xflags & XFLAG_SKIP_WORKTREE)


@dataclass(frozen=True)
class StatPolicy:
    """Which stat fields git compares (``core.trustCtime``, ``core.checkStat``,
    ``core.fileMode``, ``core.symlinks``).  The default compares everything git can."""

    trust_ctime: bool = True
    check_stat_minimal: bool = False
    file_mode: bool = True
    symlinks: bool = True


STRICT = StatPolicy()


def _decode_varint(data: bytes, pos: int) -> Tuple[int, int]:
    """Git's offset varint (varint.c): 7 bits a byte, most significant first, each
    continuation adding one.  Returns (value, position after it)."""
    try:
        byte = data[pos]
        pos += 1
        value = byte & 0x7F
        while byte & 0x80:
            byte = data[pos]
            pos += 1
            value = ((value + 1) << 7) | (byte & 0x7F)
    except IndexError:
        raise IndexFormatError("truncated varint in a version 4 index") from None
    return value, pos


class GitIndex:
    """A parsed index: ``entries_under(prefix)`` gives one directory's entries.

    ``timestamp_ns`` is the index file's own mtime, which decides racy cleanliness.
    """

    def __init__(self, data: bytes, timestamp_ns: int, oid_size: int = 20) -> None:
        self.timestamp_ns = timestamp_ns
        self._data = data
        self._oid_size = oid_size
        self._paths: "List[bytes] | _PathView" = []
        self._offsets: List[int] = []  # where each entry starts
        self._lengths: List[int] = []  # v2, v3: each path's length
        self._by_dir: Dict[str, Dict[str, IndexEntry]] = {}
        self._got: Dict[str, Optional[IndexEntry]] = {}  # get()'s answers (the index is immutable)
        # The checksum's hash state at every multiple of _CHECKPOINT bytes, once the
        # checksum has been verified (with_stat): a rewrite re-hashes from the first
        # changed entry only.
        self._checkpoints: Optional[List[Tuple[int, "hashlib._Hash"]]] = None
        # Positions of the entries that may be racily clean: None means every entry (a
        # parsed index); an index this module derived knows a short list (with_stat).
        self._racy_candidates: Optional[List[int]] = None
        self._racy_known: Optional[Tuple[int, List[int]]] = None  # (index second, positions)
        self._parse()

    # -- parsing -------------------------------------------------------------------------

    def _parse(self) -> None:
        data = self._data
        if len(data) < _HEADER.size + self._oid_size:
            raise IndexFormatError("the index file is too short")
        signature, version, count = _HEADER.unpack_from(data, 0)
        if signature != b"DIRC":
            raise IndexFormatError("no DIRC signature")
        if version not in (2, 3, 4):
            raise IndexFormatError(f"index version {version} is not supported")
        self.version = version
        fixed = _STAT_BYTES + self._oid_size  # up to the flags
        end = len(data) - self._oid_size  # the trailing checksum
        pos = _HEADER.size
        offsets = self._offsets
        if version == 4:
            paths = self._paths = []
            previous = b""
            for _ in range(count):
                if pos + fixed + 2 > end:
                    raise IndexFormatError("the index ends inside an entry")
                flags = (data[pos + fixed] << 8) | data[pos + fixed + 1]
                strip, start = _decode_varint(data, pos + fixed + (4 if flags & FLAG_EXTENDED else 2))
                nul = data.find(b"\0", start, end)
                if nul < 0 or strip > len(previous):
                    raise IndexFormatError("a malformed path in a version 4 index")
                previous = previous[: len(previous) - strip] + data[start:nul]
                paths.append(previous)
                offsets.append(pos)
                pos = nul + 1
        else:
            # Only offsets and name lengths here: paths are sliced when a search probes
            # them, so that a large index costs little to take in.
            lengths = self._lengths
            add_offset, add_length = offsets.append, lengths.append
            for _ in range(count):
                if pos + fixed + 2 > end:
                    raise IndexFormatError("the index ends inside an entry")
                flags = (data[pos + fixed] << 8) | data[pos + fixed + 1]
                head = fixed + 2
                if flags & FLAG_EXTENDED:
                    if version < 3:
                        raise IndexFormatError("an extended entry in a version 2 index")
                    head = fixed + 4
                length = flags & FLAG_NAME_MASK
                if length == FLAG_NAME_MASK:  # 4095 or longer: find the NUL
                    nul = data.find(b"\0", pos + head + length, end)
                    if nul < 0:
                        raise IndexFormatError("an unterminated path in the index")
                    length = nul - pos - head
                add_offset(pos)
                add_length(length)
                # 1 to 8 NULs pad the entry to a multiple of 8 bytes
                pos += (head + length + 8) & ~7
            self._paths = _PathView(data, offsets, lengths, fixed)
        if pos > end:
            raise IndexFormatError("the index ends inside an entry")
        self._check_extensions(pos, end)

    def _check_extensions(self, pos: int, end: int) -> None:
        data = self._data
        while pos + 8 <= end:
            signature = data[pos : pos + 4]
            size = int.from_bytes(data[pos + 4 : pos + 8], "big")
            if signature == b"link":
                raise IndexFormatError("a split index (its entries live in a shared index file)")
            pos += 8 + size

    def _entry_at(self, i: int) -> IndexEntry:
        return self._entry(self._offsets[i])

    def _entry(self, offset: int) -> IndexEntry:
        data = self._data
        fields = _STAT.unpack_from(data, offset)
        oid_end = offset + _STAT_BYTES + self._oid_size
        flags = (data[oid_end] << 8) | data[oid_end + 1]
        xflags = (data[oid_end + 2] << 8) | data[oid_end + 3] if flags & FLAG_EXTENDED else 0
        return IndexEntry(*fields, data[offset + _STAT_BYTES : oid_end].hex(), flags, xflags)

    # -- rewriting stat data ---------------------------------------------------------------

    @property
    def data(self) -> bytes:
        """The index file's bytes."""
        return self._data

    def racy_entries(self) -> List[Tuple[str, IndexEntry]]:
        """The stage-0 entries (not submodules) that may be racily clean: mtime not older
        than the index file's own (whole seconds).  Git compares their contents before it
        writes the index again, and marks a changed one (size 0) so that it stays seen as
        changed.  One pass over the entries for a parsed index; a derived one knows."""
        found = []
        for i in self._racy_positions():
            entry = self._entry_at(i)
            if entry.stage == 0 and entry.mode & 0o170000 != 0o160000:
                found.append((os.fsdecode(self._paths[i]), entry))
        return found

    def _racy_positions(self) -> List[int]:
        if self.timestamp_ns is None:  # derived and not written yet: any candidate may be
            return list(range(len(self._offsets)) if self._racy_candidates is None else self._racy_candidates)
        seconds = (self.timestamp_ns // 1_000_000_000) & _MASK
        known = self._racy_known
        if known is not None and known[0] == seconds:
            return known[1]
        threshold = seconds.to_bytes(4, "big")
        data, offsets = self._data, self._offsets
        candidates = range(len(offsets)) if self._racy_candidates is None else self._racy_candidates
        # big-endian 32-bit mtimes compare as their bytes do
        found = [i for i in candidates if data[offsets[i] + 8 : offsets[i] + 12] >= threshold]
        self._racy_known = (seconds, found)
        return found

    def _stage0_position(self, path: str) -> Optional[int]:
        """Where the stage-0 entry of ``path`` is, if it has one."""
        key = os.fsencode(path)
        i = bisect.bisect_left(self._paths, key)
        while i < len(self._paths) and self._paths[i] == key:
            if self._entry_at(i).stage == 0:
                return i
            i += 1
        return None

    def with_stat(self, stats: Dict[str, os.stat_result], smudge: Sequence[str] = ()) -> "GitIndex":
        """This index with the stat data of the stage-0 entries of ``stats``'s paths taken
        from those stat results (object ids, modes, flags and extensions kept), and a new
        checksum: what ``git update-index --refresh`` records for files whose content is
        known to be their indexed blob.  The entries of ``smudge`` get size 0, as git
        marks a racily clean entry whose file changed (see :meth:`racy_entries`).  The
        result's ``timestamp_ns`` is None until the caller writes it and sets it from the
        written file.

        Raises :class:`IndexFormatError` for a path without a stage-0 entry, and
        :class:`IndexChecksumError` when this index's own checksum is wrong (a damaged
        index is never re-sealed).  Costs one copy of the bytes and one hash of those from
        the first changed entry on, plus, the first time, a hash of the whole file.
        """
        if self._oid_size == 20:
            new_hash = hashlib.sha1
        elif self._oid_size == 32:
            new_hash = hashlib.sha256
        else:
            raise IndexFormatError(f"object ids of {self._oid_size} bytes")
        checkpoints = self._checkpoints
        end = len(self._data) - self._oid_size
        # index.skipHash (git 2.40; feature.manyFiles turns it on): git writes no
        # checksum, zeros in its place, and so does this rewrite.
        skip_hash = self._data[end:] == bytes(self._oid_size)
        if skip_hash:
            checkpoints = [(0, new_hash())]
        elif checkpoints is None:
            checkpoints, digest = _hash_with_checkpoints(new_hash(), [memoryview(self._data)[:end]], 0, end, [])
            if digest != self._data[end:]:
                raise IndexChecksumError("the index checksum does not match its content")
            self._checkpoints = checkpoints
        patches: List[Tuple[int, bytes]] = []
        touched: List[int] = []
        for path, st in list(stats.items()) + [(p, None) for p in smudge if p not in stats]:
            i = self._stage0_position(path)
            if i is None:
                raise IndexFormatError(f"no stage-0 entry for {path!r}")
            offset = self._offsets[i]
            fields = list(_STAT.unpack_from(self._data, offset))
            if st is None:
                fields[9] = 0  # size: never matches a file again until git re-reads it
            else:
                fields = [
                    (st.st_ctime_ns // 1_000_000_000) & _MASK, st.st_ctime_ns % 1_000_000_000,
                    (st.st_mtime_ns // 1_000_000_000) & _MASK, st.st_mtime_ns % 1_000_000_000,
                    st.st_dev & _MASK, st.st_ino & _MASK, fields[6],  # git's mode, not the file's
                    st.st_uid & _MASK, st.st_gid & _MASK, st.st_size & _MASK,
                ]
            patches.append((offset, _STAT.pack(*fields)))
            touched.append(i)
        patches.sort()
        view = memoryview(self._data)
        pieces: list = []
        pos = 0
        for offset, packed in patches:
            pieces += (view[pos:offset], packed)
            pos = offset + _STAT_BYTES
        pieces.append(view[pos:end])
        first = patches[0][0] if patches else end
        kept = [c for c in checkpoints if c[0] <= first]
        start, state = kept[-1]
        if skip_hash:
            new_checkpoints, digest = None, bytes(self._oid_size)
        else:
            new_checkpoints, digest = _hash_with_checkpoints(state.copy(), pieces, start, end, kept)
        pieces.append(digest)
        derived = GitIndex.__new__(GitIndex)
        derived.__dict__.update(self.__dict__)
        derived._data = b"".join(pieces)  # the one copy of the index's bytes
        derived.timestamp_ns = None  # type: ignore[assignment]
        derived._by_dir, derived._got = {}, {}
        derived._racy_known = None
        derived._checkpoints = new_checkpoints
        # Racy in the derived index (written later, so its timestamp is not older) can
        # only be what was racy here, or what was rewritten.
        derived._racy_candidates = sorted(set(self._racy_positions()) | set(touched))
        if isinstance(self._paths, _PathView):
            derived._paths = _PathView(derived._data, self._offsets, self._lengths, _STAT_BYTES + self._oid_size)
        return derived

    # -- queries -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._paths)

    def get(self, path: str) -> Optional[IndexEntry]:
        """The stage-0 entry of ``path`` (repository-relative, POSIX), if any."""
        if path in self._got:
            return self._got[path]
        found = self._find(path)
        if len(self._got) > 1024:
            self._got.clear()
        self._got[path] = found
        return found

    def _find(self, path: str) -> Optional[IndexEntry]:
        i = self._stage0_position(path)
        return None if i is None else self._entry_at(i)

    def entries_under(self, directory: str) -> Dict[str, IndexEntry]:
        """Every stage-0 entry below ``directory`` (``""``: all), as ``{path: entry}``.
        Entries of a path in conflict (stages 1-3) are left out: no stat cache for them."""
        found = self._by_dir.get(directory)
        if found is not None:
            return found
        prefix = os.fsencode(directory.rstrip("/") + "/") if directory not in ("", ".") else b""
        paths = self._paths
        i = bisect.bisect_left(paths, prefix)
        out: Dict[str, IndexEntry] = {}
        conflicted = set()
        while i < len(paths) and paths[i].startswith(prefix):
            entry = self._entry_at(i)
            name = os.fsdecode(paths[i])
            if entry.stage == 0:
                out[name] = entry
            else:
                conflicted.add(name)
            i += 1
        for name in conflicted:
            out.pop(name, None)
        if len(self._by_dir) > 256:
            self._by_dir.clear()
        self._by_dir[directory] = out
        return out


class _PathView:
    """The paths of a version 2 or 3 index as a sequence (for :mod:`bisect`), sliced
    from the file's bytes on demand."""

    __slots__ = ("_data", "_offsets", "_lengths", "_fixed")

    def __init__(self, data: bytes, offsets: List[int], lengths: List[int], fixed: int) -> None:
        self._data, self._offsets, self._lengths, self._fixed = data, offsets, lengths, fixed

    def __len__(self) -> int:
        return len(self._offsets)

    def __getitem__(self, i: int) -> bytes:
        flags_at = self._offsets[i] + self._fixed
        start = flags_at + (4 if self._data[flags_at] & 0x40 else 2)  # FLAG_EXTENDED's byte
        return self._data[start : start + self._lengths[i]]


def _hash_with_checkpoints(hasher, segments, start: int, end: int, checkpoints: list):
    """Hash bytes ``start`` to ``end`` of the stream that ``segments`` (buffers, in order)
    make up into ``hasher`` (which holds the bytes before ``start``), keeping its state at
    every multiple of _CHECKPOINT; returns (checkpoints, digest).  Segments are hashed
    where they lie: the stream is never copied into one buffer for it."""
    checkpoints = list(checkpoints) if checkpoints else [(0, hasher.copy())]
    pos = 0
    for segment in segments:
        view = memoryview(segment)
        segment_end = pos + len(view)
        at = max(start, pos)
        while at < segment_end:
            stop = min(segment_end, (at // _CHECKPOINT + 1) * _CHECKPOINT)
            hasher.update(view[at - pos : stop - pos])
            at = stop
            if at % _CHECKPOINT == 0 and at < end:
                checkpoints.append((at, hasher.copy()))
        pos = segment_end
    return checkpoints, hasher.digest()


def read_index(path: str, oid_size: int = 20) -> Tuple[Optional[GitIndex], Optional[os.stat_result]]:
    """Parse the index file at ``path``: (index, its stat) — (None, None) when absent."""
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            data = fh.read()
    except FileNotFoundError:
        return None, None
    return GitIndex(data, st.st_mtime_ns, oid_size), st


def stat_key(st: os.stat_result) -> Tuple[int, int, int, int]:
    """What says a file was rewritten: mtime, ctime, size, inode (git's lock-file rename
    gives every new index a new inode)."""
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


_MASK = 0xFFFFFFFF


def is_racy(entry: IndexEntry, index_timestamp_ns: int) -> bool:
    """True when the file may have changed in the same second the index recorded it
    (git's "racily clean" entries): its mtime is not older than the index file's.
    Compared in whole seconds, more cautious than git built with nanosecond stamps."""
    return entry.mtime_s >= (index_timestamp_ns // 1_000_000_000) & _MASK


def stat_matches(entry: IndexEntry, st: os.stat_result, policy: StatPolicy = STRICT) -> bool:
    """True when the lstat of a file matches its index entry as git compares them
    (read-cache.c, ce_match_stat_basic): type and owner exec bit, mtime, ctime unless
    ``core.trustCtime=false``, inode, uid, gid (not with ``core.checkStat=minimal``),
    size.  The device number is not compared, as git does by default.  A smudged entry
    (size 0 for a non-empty blob: racily clean when the index was written) never matches.
    """
    mode = entry.mode & 0o170000
    st_mode = st.st_mode
    if mode == stat.S_IFREG:
        if not stat.S_ISREG(st_mode):
            return False
        if policy.file_mode and (entry.mode ^ st_mode) & 0o100:
            return False
    elif mode == stat.S_IFLNK:
        if not (stat.S_ISLNK(st_mode) or (not policy.symlinks and stat.S_ISREG(st_mode))):
            return False
    else:
        return False
    if entry.size != st.st_size & _MASK:
        return False
    if entry.size == 0 and entry.oid != EMPTY_BLOB_SHA1:
        return False
    mtime_ns = st.st_mtime_ns
    if entry.mtime_s != (mtime_ns // 1_000_000_000) & _MASK:
        return False
    if policy.trust_ctime and entry.ctime_s != (st.st_ctime_ns // 1_000_000_000) & _MASK:
        return False
    if not policy.check_stat_minimal:
        if entry.mtime_ns != mtime_ns % 1_000_000_000:
            return False
        if policy.trust_ctime and entry.ctime_ns != st.st_ctime_ns % 1_000_000_000:
            return False
        if entry.ino != st.st_ino & _MASK or entry.uid != st.st_uid & _MASK or entry.gid != st.st_gid & _MASK:
            return False
    return True
