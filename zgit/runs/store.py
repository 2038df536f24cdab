"""The run store: run records in SQLite, step outputs as content-addressed artifacts.

Layout under the store directory (default ``<repository>/.zgit/store``; ``store: {path:
...}`` in ``.zgit/config.yaml`` or ``ZGIT_STORE``)::

    .gitignore          "*": the store is never committed
    runs.sqlite         run and step records, the step cache, code identities
    artifacts/ab/cd...  one file per artifact, named by the SHA-256 of its bytes
    tmp/                artifacts being written (renamed into place when complete)

Many processes may use one store at once: SQLite runs in WAL mode with a busy timeout,
every write is one short ``BEGIN IMMEDIATE`` transaction, and an artifact becomes visible
only by an atomic rename of a complete file, after which the row that names it is
written.  A process killed at any point leaves at worst a stray file in ``tmp/`` and a
run whose status reads ``died``.  Every artifact read checks the bytes against their
digest: a corrupted file raises :class:`CorruptArtifactError` (and is moved aside), it is
never returned.

This module is the only one that knows how runs are stored: another backend (a shared
database and object storage) is another class with the same methods.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import pickle
import secrets
import socket
import sqlite3
import struct
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from zgit.errors import ArtifactError, CorruptArtifactError, RunNotFoundError, StoreError

SCHEMA_VERSION = 2
DB_NAME = "runs.sqlite"
BUSY_TIMEOUT_S = 60.0
PICKLE_PROTOCOL = 5
# Artifact file: magic, number of out-of-band buffers, length of the pickle stream, then
# each buffer's length; the pickle stream; the buffers.  Large contiguous buffers (numpy
# arrays) are kept out of the pickle stream, so reading one back is a single read of the
# file plus the digest check: the array is built on the bytes read, without a copy.
_MAGIC = b"ZGA1"
_HEAD = struct.Struct("<4sIQ")
_LEN = struct.Struct("<Q")
_OUT_OF_BAND_MIN = 64 * 1024

STATUSES = ("running", "completed", "failed", "died")

# Schema version 1 (zgit before process liveness was recorded); each entry of
# _MIGRATIONS takes the store from version i to i + 1.
_SCHEMA_V1 = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    yaml TEXT NOT NULL,
    head TEXT,
    clean INTEGER NOT NULL,
    zgit_version TEXT NOT NULL,
    python_version TEXT NOT NULL,
    platform TEXT NOT NULL,
    input_digest TEXT,
    started REAL NOT NULL,
    ended REAL,
    status TEXT NOT NULL,
    pid INTEGER NOT NULL,
    error TEXT
);
CREATE INDEX runs_by_pipeline ON runs (pipeline, id);
CREATE TABLE steps (
    run_id TEXT NOT NULL REFERENCES runs (id),
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    code_identity TEXT,
    args TEXT NOT NULL,
    input_digest TEXT,
    output_digest TEXT,
    cache_key TEXT,
    cached_from TEXT,
    duration REAL,
    error TEXT,
    PRIMARY KEY (run_id, position)
);
CREATE INDEX steps_by_output ON steps (output_digest);
CREATE TABLE cache (
    key TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    run_id TEXT NOT NULL,
    created REAL NOT NULL
);
"""
_MIGRATIONS = {
    0: _SCHEMA_V1,
    1: """
ALTER TABLE runs ADD COLUMN host TEXT;
ALTER TABLE runs ADD COLUMN process_start TEXT;
ALTER TABLE runs ADD COLUMN reproducible INTEGER NOT NULL DEFAULT 1;
CREATE TABLE code_identities (source TEXT PRIMARY KEY, identity TEXT NOT NULL);
""",
}


@dataclass(frozen=True)
class StepRecord:
    """One step of a run as recorded: ``cached_from`` is the run whose output was reused
    (None when the step executed)."""

    position: int
    name: str
    source: str
    code_identity: Optional[str]
    args: Dict[str, Any]
    input_digest: Optional[str]
    output_digest: Optional[str]
    cache_key: Optional[str] = None
    cached_from: Optional[str] = None
    duration: Optional[float] = None
    error: Optional[str] = None

    @property
    def cached(self) -> bool:
        return self.cached_from is not None

    def to_dict(self) -> Dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["cached"] = self.cached
        return data


@dataclass(frozen=True)
class RunRecord:
    """One run: what ran (the pipeline YAML and its pins), where, when and how it ended."""

    id: str
    pipeline: str
    yaml: str
    head: Optional[str]
    clean: bool
    zgit_version: str
    python_version: str
    platform: str
    input_digest: Optional[str]
    started: float
    ended: Optional[float]
    status: str
    pid: int
    host: Optional[str] = None
    process_start: Optional[str] = None
    reproducible: bool = True
    error: Optional[str] = None
    steps: Tuple[StepRecord, ...] = field(default=())

    def to_dict(self, steps: bool = True) -> Dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "steps"}
        if steps:
            data["steps"] = [s.to_dict() for s in self.steps]
        return data


_RUN_COLUMNS = ("id", "pipeline", "yaml", "head", "clean", "zgit_version", "python_version", "platform",
                "input_digest", "started", "ended", "status", "pid", "host", "process_start",
                "reproducible", "error")
_STEP_COLUMNS = ("position", "name", "source", "code_identity", "args", "input_digest", "output_digest",
                 "cache_key", "cached_from", "duration", "error")


def new_run_id(now: Optional[float] = None) -> str:
    """A run id that sorts by start time: ``20261202-144821-123456-a3f9`` (UTC)."""
    now = time.time() if now is None else now
    seconds = int(now)
    micros = int((now - seconds) * 1_000_000)
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(seconds)) + f"-{micros:06d}-{secrets.token_hex(2)}"


def process_start_time(pid: int) -> Optional[str]:
    """When process ``pid`` started, as the kernel counts it (Linux), or None.

    Recorded with the pid so that a pid reused by another process is not taken for the
    run's own."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from its end.
    fields = stat[stat.rfind(b")") + 2:].split()
    return fields[19].decode() if len(fields) > 19 else None


def _process_is_alive(pid: int, started: Optional[str]) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    except OSError:
        return True
    if started is not None:
        now = process_start_time(pid)
        if now is not None and now != started:
            return False  # the pid was reused
    return True


def digest_bytes(data: "bytes | memoryview") -> str:
    """The content address of an artifact's bytes."""
    return hashlib.sha256(data).hexdigest()


def serialize(obj: Any) -> bytes:
    """The artifact bytes of ``obj`` (pickle protocol 5, large buffers out of band)."""
    buffers: List[memoryview] = []

    def keep_out_of_band(buffer: pickle.PickleBuffer) -> bool:
        try:
            raw = buffer.raw()
        except BufferError:  # not contiguous: in band
            return True
        if raw.nbytes < _OUT_OF_BAND_MIN:
            return True
        buffers.append(raw)
        return False

    stream = pickle.dumps(obj, protocol=PICKLE_PROTOCOL, buffer_callback=keep_out_of_band)
    parts = [_HEAD.pack(_MAGIC, len(buffers), len(stream))]
    parts.extend(_LEN.pack(b.nbytes) for b in buffers)
    parts.append(stream)
    parts.extend(buffers)
    return b"".join(parts)


def deserialize(data: "bytes | bytearray | memoryview") -> Any:
    """The object of artifact bytes (the inverse of :func:`serialize`)."""
    view = memoryview(data)
    magic, count, length = _HEAD.unpack_from(view, 0)
    if magic != _MAGIC:
        raise ValueError("not a zgit artifact")
    offset = _HEAD.size
    sizes = []
    for _ in range(count):
        sizes.append(_LEN.unpack_from(view, offset)[0])
        offset += _LEN.size
    stream = view[offset:offset + length]
    offset += length
    buffers = []
    for size in sizes:
        buffers.append(view[offset:offset + size])
        offset += size
    return pickle.loads(stream, buffers=buffers)


class RunStore:
    """One store directory.  Thread-safe; any number of processes may share it."""

    def __init__(self, path: "str | os.PathLike[str]", *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.artifacts_dir = self.path / "artifacts"
        self.tmp_dir = self.path / "tmp"
        self._lock = threading.RLock()
        try:
            self.artifacts_dir.mkdir(parents=True, exist_ok=True)
            self.tmp_dir.mkdir(exist_ok=True)
            ignore = self.path / ".gitignore"
            if not ignore.exists():
                _write_atomic(ignore, b"# zgit's run store: never committed\n*\n", self.tmp_dir, False)
            self._db = sqlite3.connect(
                str(self.path / DB_NAME), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                check_same_thread=False,
            )
            self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = " + ("FULL" if fsync else "NORMAL"))
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(
                f"cannot open the run store at {self.path}: {exc}; check the directory is writable, "
                "or point 'store: {path: ...}' in .zgit/config.yaml (or ZGIT_STORE) elsewhere"
            ) from exc

    # -- connection and schema -------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction (taken at once, so it never has to upgrade)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        if self.schema_version() == SCHEMA_VERSION:
            return
        with self._write() as db:  # another process may be migrating: look again inside
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the run store at {self.path} was written by a newer zgit (schema version "
                    f"{version}, this zgit reads up to {SCHEMA_VERSION}); upgrade zgit"
                )
            while version < SCHEMA_VERSION:
                for statement in _MIGRATIONS[version].split(";"):
                    if statement.strip():
                        db.execute(statement)
                version += 1
                db.execute(f"PRAGMA user_version = {version}")

    # -- runs ------------------------------------------------------------------------

    def begin_run(self, *, pipeline: str, yaml: str, head: Optional[str], clean: bool,
                  zgit_version: str, python_version: str, platform: str,
                  input_digest: Optional[str], reproducible: bool) -> RunRecord:
        """Record a new run as ``running`` by this process and return it."""
        pid = os.getpid()
        record = RunRecord(
            id=new_run_id(), pipeline=pipeline, yaml=yaml, head=head, clean=clean,
            zgit_version=zgit_version, python_version=python_version, platform=platform,
            input_digest=input_digest, started=time.time(), ended=None, status="running", pid=pid,
            host=socket.gethostname(), process_start=process_start_time(pid), reproducible=reproducible,
        )
        values = [getattr(record, c) for c in _RUN_COLUMNS]
        with self._write() as db:
            db.execute(f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES "
                       f"({', '.join('?' * len(_RUN_COLUMNS))})", values)
        return record

    def add_step(self, run_id: str, step: StepRecord) -> None:
        """Record one finished (or failed) step; an executed step's output enters the cache."""
        values = [getattr(step, c) for c in _STEP_COLUMNS]
        # Order kept: a mapping's order can be part of its meaning (a rerun builds the step
        # from exactly these args).
        values[_STEP_COLUMNS.index("args")] = json.dumps(step.args, default=repr)
        with self._write() as db:
            db.execute(f"INSERT INTO steps (run_id, {', '.join(_STEP_COLUMNS)}) VALUES "
                       f"(?, {', '.join('?' * len(_STEP_COLUMNS))})", [run_id] + values)
            if step.cache_key and step.output_digest and not step.cached and step.error is None:
                db.execute("INSERT OR REPLACE INTO cache (key, digest, run_id, created) VALUES (?, ?, ?, ?)",
                           (step.cache_key, step.output_digest, run_id, time.time()))

    def finish_run(self, run_id: str, status: str, error: Optional[str] = None) -> None:
        """Mark the run ``completed`` or ``failed``."""
        with self._write() as db:
            db.execute("UPDATE runs SET status = ?, ended = ?, error = ? WHERE id = ?",
                       (status, time.time(), error, run_id))

    def get_run(self, run_id: str) -> RunRecord:
        """The run ``run_id`` (a unique prefix will do), with its steps."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs WHERE id >= ? AND id < ? ORDER BY id LIMIT 2",
                (run_id, run_id + "\uffff"),
            ).fetchall()
            if not rows:
                raise RunNotFoundError(f"no run {run_id!r} in the run store at {self.path}; list them with 'zgit runs'")
            if len(rows) > 1 and rows[0][0] != run_id:
                raise RunNotFoundError(
                    f"run id {run_id!r} is ambiguous ({rows[0][0]}, {rows[1][0]}, ...); give more of it")
            run = self._liveness([self._run(rows[0])])[0]
            steps = self._db.execute(
                f"SELECT {', '.join(_STEP_COLUMNS)} FROM steps WHERE run_id = ? ORDER BY position",
                (run.id,),
            ).fetchall()
        return replace(run, steps=tuple(self._step(row) for row in steps))

    def list_runs(self, pipeline: Optional[str] = None, limit: Optional[int] = None) -> List[RunRecord]:
        """Runs, newest first, without their steps and YAML (``yaml`` is ""; :meth:`get_run`
        has both); a ``running`` run whose process is gone is marked ``died`` (here and in
        the store)."""
        where, params = ("WHERE pipeline = ?", [pipeline]) if pipeline is not None else ("", [])
        columns = ", ".join("'' AS yaml" if c == "yaml" else c for c in _RUN_COLUMNS)
        sql = f"SELECT {columns} FROM runs {where} ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return self._liveness([self._run(row) for row in rows])

    def _liveness(self, runs: List[RunRecord]) -> List[RunRecord]:
        host = socket.gethostname()
        dead = [r.id for r in runs if r.status == "running" and r.host == host
                and not _process_is_alive(r.pid, r.process_start)]
        if not dead:
            return runs
        with self._write() as db:
            db.executemany("UPDATE runs SET status = 'died' WHERE id = ? AND status = 'running'",
                           [(d,) for d in dead])
        gone = set(dead)
        return [replace(r, status="died") if r.id in gone else r for r in runs]

    @staticmethod
    def _run(row: Sequence[Any]) -> RunRecord:
        data = dict(zip(_RUN_COLUMNS, row))
        data["clean"] = bool(data["clean"])
        data["reproducible"] = bool(data["reproducible"]) if data["reproducible"] is not None else True
        data["steps"] = ()
        # The frozen dataclass's __init__ sets each field through object.__setattr__: a
        # listing of 10,000 runs spends most of its time there.  The values are the
        # columns, already checked by the schema.
        record = object.__new__(RunRecord)
        record.__dict__.update(data)
        return record

    @staticmethod
    def _step(row: Sequence[Any]) -> StepRecord:
        data = dict(zip(_STEP_COLUMNS, row))
        data["args"] = json.loads(data["args"])
        return StepRecord(**data)

    # -- the step cache and code identities --------------------------------------------

    def lookup(self, key: str) -> Optional[Tuple[str, str]]:
        """(output digest, run id) cached under ``key``, or None."""
        with self._lock:
            row = self._db.execute("SELECT digest, run_id FROM cache WHERE key = ?", (key,)).fetchone()
        return (row[0], row[1]) if row else None

    def forget(self, key: str) -> None:
        """Drop one cache entry (its artifact is missing or corrupt)."""
        with self._write() as db:
            db.execute("DELETE FROM cache WHERE key = ?", (key,))

    def code_identity(self, source: str) -> Optional[str]:
        """The remembered code identity of a git-pinned source (immutable once computed)."""
        with self._lock:
            row = self._db.execute("SELECT identity FROM code_identities WHERE source = ?", (source,)).fetchone()
        return row[0] if row else None

    def remember_code_identity(self, source: str, identity: str) -> None:
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO code_identities (source, identity) VALUES (?, ?)", (source, identity))

    # -- artifacts ---------------------------------------------------------------------

    def artifact_path(self, digest: str) -> Path:
        return self.artifacts_dir / digest[:2] / digest[2:]

    def put(self, obj: Any) -> str:
        """Store ``obj`` as an artifact; its digest."""
        return self.put_bytes(serialize(obj))

    def put_bytes(self, data: bytes) -> str:
        digest = digest_bytes(data)
        path = self.artifact_path(digest)
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            _write_atomic(path, data, self.tmp_dir, self.fsync)
        return digest

    def has(self, digest: str) -> bool:
        return self.artifact_path(digest).is_file()

    def get_bytes(self, digest: str) -> Any:
        """The bytes of artifact ``digest`` (a writable buffer: arrays built on it are
        writable), checked against it.

        :class:`ArtifactError` when absent; :class:`CorruptArtifactError` when the bytes do
        not match (the file is moved aside into ``corrupt/``, so the next write replaces it)."""
        path = self.artifact_path(digest)
        try:
            with open(path, "rb", buffering=0) as f:
                size = os.fstat(f.fileno()).st_size
                # A large artifact goes into anonymous memory, which the kernel hands out
                # zeroed page by page as the read fills it: bytearray(size) would first
                # write zeros over all of it, which costs more than the read itself.
                data: Any = mmap.mmap(-1, size) if size >= _ANONYMOUS_MIN else bytearray(size)
                view = memoryview(data)
                got, actual = _read_and_digest(f, view, size)
        except FileNotFoundError:
            raise ArtifactError(f"artifact {digest} is not in the run store at {self.path}") from None
        if got != size or actual != digest:
            self._quarantine(path)
            raise CorruptArtifactError(
                f"artifact {path} does not match its digest {digest} (corrupted on disk); it was "
                "moved aside and is treated as absent"
            )
        return data

    def get(self, digest: str) -> Any:
        """The object stored as artifact ``digest`` (pinned classes come back pinned)."""
        return deserialize(self.get_bytes(digest))

    def _quarantine(self, path: Path) -> None:
        aside = self.path / "corrupt"
        try:
            aside.mkdir(exist_ok=True)
            os.replace(path, aside / f"{path.parent.name}{path.name}-{secrets.token_hex(4)}")
        except OSError:
            pass

    # -- garbage collection -------------------------------------------------------------

    def gc(self, keep_last: int) -> Tuple[List[str], int]:
        """Delete all but the ``keep_last`` newest runs of each pipeline (never a running
        one), the cache entries whose output no kept run holds, and every artifact no
        kept run refers to.

        Returns (deleted run ids, number of artifact files removed)."""
        if keep_last < 0:
            raise ValueError("keep_last must be >= 0")
        self.list_runs()  # mark died runs first
        with self._write() as db:
            rows = db.execute("SELECT id, pipeline, status FROM runs ORDER BY id DESC").fetchall()
            seen: Dict[str, int] = {}
            doomed = []
            for run_id, pipeline, status in rows:
                seen[pipeline] = seen.get(pipeline, 0) + 1
                if seen[pipeline] > keep_last and status != "running":
                    doomed.append(run_id)
            for start in range(0, len(doomed), 500):
                chunk = doomed[start:start + 500]
                marks = ", ".join("?" * len(chunk))
                db.execute(f"DELETE FROM steps WHERE run_id IN ({marks})", chunk)
                db.execute(f"DELETE FROM runs WHERE id IN ({marks})", chunk)
            # A cache entry lives as long as a kept run holds its output.
            db.execute("DELETE FROM cache WHERE digest NOT IN "
                       "(SELECT output_digest FROM steps WHERE output_digest IS NOT NULL)")
            kept = {d for (d,) in db.execute("SELECT output_digest FROM steps WHERE output_digest IS NOT NULL")}
            kept |= {d for (d,) in db.execute("SELECT input_digest FROM steps WHERE input_digest IS NOT NULL")}
            kept |= {d for (d,) in db.execute("SELECT input_digest FROM runs WHERE input_digest IS NOT NULL")}
            # A running run may have written an artifact whose row is not written yet:
            # files newer than the oldest running run's start are left alone.
            running = [started for (started,) in db.execute("SELECT started FROM runs WHERE status = 'running'")]
            young = min(running) - 1.0 if running else float("inf")
            removed = 0
            for sub in self.artifacts_dir.iterdir():
                if not sub.is_dir():
                    continue
                for file in sub.iterdir():
                    if sub.name + file.name not in kept:
                        try:
                            if file.stat().st_mtime >= young:
                                continue
                        except OSError:
                            continue
                        try:
                            file.unlink()
                            removed += 1
                        except OSError:
                            pass
        return doomed, removed


_CHUNK = 8 << 20
_ANONYMOUS_MIN = 1 << 20


def _read_and_digest(f: Any, view: memoryview, size: int) -> Tuple[int, str]:
    """Read the file into ``view`` and digest it: (bytes read, hex digest).

    A large file is read in chunks while another thread digests the chunks already read
    (both release the GIL), so the digest costs little more than the read."""
    if size <= 2 * _CHUNK:
        got = 0
        while got < size:
            n = f.readinto(view[got:])
            if not n:
                break
            got += n
        return got, digest_bytes(view[:got])
    import queue

    pending: "queue.SimpleQueue[Optional[memoryview]]" = queue.SimpleQueue()
    hasher = hashlib.sha256()

    def digest_chunks() -> None:
        while True:
            chunk = pending.get()
            if chunk is None:
                return
            hasher.update(chunk)

    worker = threading.Thread(target=digest_chunks, name="zgit-artifact-digest", daemon=True)
    worker.start()
    got = 0
    try:
        while got < size:
            n = f.readinto(view[got:min(size, got + _CHUNK)])
            if not n:
                break
            pending.put(view[got:got + n])
            got += n
    finally:
        pending.put(None)
        worker.join()
    return got, hasher.hexdigest()


def _write_atomic(path: Path, data: bytes, tmp_dir: Path, fsync: bool) -> None:
    """Write ``data`` to a temporary file and rename it to ``path``: readers see the whole
    file or none."""
    tmp = tmp_dir / f"{path.name[:16]}-{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
