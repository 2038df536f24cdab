"""The run store under kills, concurrency, corruption and an older schema (issue 12)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings, strategies as st

from zgit import Repository
from zgit.errors import CorruptArtifactError, StoreError
from zgit.runs.store import SCHEMA_VERSION, RunStore, digest_bytes
from tests._cli import zgit_env
from tests.test_runs import build, executed, last_run, make_project

SLOW = '''\
import os
import time

from zgit import BaseStep


class Slow(BaseStep):
    def __init__(self, seconds=0.0):
        self.seconds = seconds

    def run(self, data):
        marker = os.environ.get("ZGIT_TEST_MARKER")
        if marker:
            open(marker, "w").close()
        time.sleep(self.seconds)
        return data
'''

SCRIPT = '''\
import sys
sys.path.insert(0, ".")
from zgit import Pipeline
from steps.source.step import Numbers
from steps.slow.step import Slow

name, seconds, times = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
for i in range(times):
    pipeline = Pipeline(name)
    pipeline.add_step("source", Numbers(n=i))
    pipeline.add_step("slow", Slow(seconds=seconds))
    pipeline.run(save=False)
'''


@pytest.fixture
def project(repo):
    make_project(repo)
    repo.write("steps/slow/__init__.py", "")
    repo.write("steps/slow/step.py", SLOW)
    repo.commit("slow step")
    (repo.path.parent / "script.py").write_text(SCRIPT)
    return repo


def _start(project, *args, **env):
    return subprocess.Popen([sys.executable, str(project.path.parent / "script.py"), *map(str, args)],
                            cwd=project.path, env=zgit_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _store_is_consistent(project):
    store = Repository(project.path).run_store
    db = sqlite3.connect(str(store.path / "runs.sqlite"))
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()
    for sub in store.artifacts_dir.iterdir():
        for file in sub.iterdir():
            assert digest_bytes(file.read_bytes()) == sub.name + file.name  # no half-written artifact
    for run in store.list_runs():
        for step in store.get_run(run.id).steps:
            for digest in (step.input_digest, step.output_digest):
                assert digest is None or store.has(digest)


def test_a_run_killed_mid_step_shows_died_and_the_next_run_works(project):
    marker = project.path.parent / "started"
    proc = _start(project, "killed", 60, 1, ZGIT_TEST_MARKER=str(marker))
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, "the run ended before its step started"
            assert time.monotonic() < deadline, "the step never started"
            time.sleep(0.05)
        running = Repository(project.path).runs()
        assert [r.status for r in running] == ["running"] and running[0].pid == proc.pid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    run = Repository(project.path).runs()[0]
    assert run.status == "died" and run.pid == proc.pid
    assert [s.name for s in Repository(project.path).get_run(run.id).steps] == ["source"]
    _store_is_consistent(project)
    # the died status is stored, not only shown
    assert RunStore(Repository(project.path).run_store.path).get_run(run.id).status == "died"
    # the next run works, and reuses what the dead one finished
    out = _start(project, "killed", 0, 1)
    _, stderr = out.communicate(timeout=120)
    assert out.returncode == 0, stderr
    latest = Repository(project.path).runs()[0]
    assert latest.status == "completed"
    assert [s.cached for s in Repository(project.path).get_run(latest.id).steps] == [True, False]


BUSY_SCRIPT = '''\
import sys
sys.path.insert(0, ".")
from zgit import Pipeline
from steps.source.step import Numbers
from steps.scale.step import Scale

round_ = int(sys.argv[1])
while True:
    pipeline = Pipeline("busy", enable_cache=False)
    pipeline.add_step("source", Numbers(n=40000 + round_))
    for i in range(20):
        pipeline.add_step(f"scale{i}", Scale(factor=i + 2))
    pipeline.run(save=False)
'''


def test_kills_at_random_moments_never_leave_a_half_written_artifact(project):
    import random

    script = project.path.parent / "busy.py"
    script.write_text(BUSY_SCRIPT)
    rng = random.Random(12)
    died_seen = False
    for round_ in range(12):
        if round_ >= 6 and died_seen:
            break
        proc = subprocess.Popen([sys.executable, str(script), str(round_)], cwd=project.path,
                                env=zgit_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while not Repository(project.path).runs(pipeline="busy"):  # recording has begun
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.5))
        finally:
            proc.kill()
            proc.communicate()
        _store_is_consistent(project)
        statuses = {r.status for r in Repository(project.path).runs(pipeline="busy")}
        # A kill between two runs leaves only completed ones: the next round may hit one.
        assert statuses <= {"completed", "died"}, statuses
        died_seen = "died" in statuses
    assert died_seen  # some kill landed inside a run (at least six rounds, at most twelve)
    result = build(project).run()
    assert result["score"] == {"score": 200}


def test_two_processes_running_pipelines_at_once_are_both_recorded(project):
    procs = [_start(project, name, 0.01, 6) for name in ("first", "second")]
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
    runs = Repository(project.path).runs()
    assert sorted(r.pipeline for r in runs) == ["first"] * 6 + ["second"] * 6
    assert {r.status for r in runs} == {"completed"}
    _store_is_consistent(project)


def test_a_flipped_byte_in_an_artifact_is_detected_and_recomputed(project):
    build(project).run()
    run = last_run(project)
    store = Repository(project.path).run_store
    digest = run.steps[2].output_digest  # the fit step's output
    path = store.artifact_path(digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifactError, match="does not match its digest"):
        store.get(digest)
    assert not path.exists()  # moved aside: never read again
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="does not match its digest"):
        outputs = build(project).run()
    assert executed(project) == ["fit"] and outputs["fit"] == {"total": 20, "version": 0}
    assert store.get(digest) == {"total": 20, "version": 0}  # written again, whole


V1_STORE = """
CREATE TABLE runs (id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, yaml TEXT NOT NULL, head TEXT,
    clean INTEGER NOT NULL, zgit_version TEXT NOT NULL, python_version TEXT NOT NULL,
    platform TEXT NOT NULL, input_digest TEXT, started REAL NOT NULL, ended REAL,
    status TEXT NOT NULL, pid INTEGER NOT NULL, error TEXT);
CREATE INDEX runs_by_pipeline ON runs (pipeline, id);
CREATE TABLE steps (run_id TEXT NOT NULL REFERENCES runs (id), position INTEGER NOT NULL,
    name TEXT NOT NULL, source TEXT NOT NULL, code_identity TEXT, args TEXT NOT NULL,
    input_digest TEXT, output_digest TEXT, cache_key TEXT, cached_from TEXT, duration REAL,
    error TEXT, PRIMARY KEY (run_id, position));
CREATE INDEX steps_by_output ON steps (output_digest);
CREATE TABLE cache (key TEXT PRIMARY KEY, digest TEXT NOT NULL, run_id TEXT NOT NULL, created REAL NOT NULL);
INSERT INTO runs VALUES ('20250101-000000-000000-abcd', 'old', 'version: ''1''', NULL, 1, '0.0.9',
    '3.11.0', 'Linux', NULL, 1735689600.0, 1735689601.0, 'completed', 1, NULL);
INSERT INTO steps VALUES ('20250101-000000-000000-abcd', 0, 's', 'a.b.C@zgit_0.0.9', 'dist:zgit_0.0.9',
    '{"x": 1}', NULL, NULL, 'k', NULL, 0.5, NULL);
PRAGMA user_version = 1;
"""


def test_a_store_written_by_an_older_schema_opens(tmp_path):
    path = tmp_path / "store"
    path.mkdir()
    db = sqlite3.connect(str(path / "runs.sqlite"))
    db.executescript(V1_STORE)
    db.close()
    store = RunStore(path)
    assert store.schema_version() == SCHEMA_VERSION
    [run] = store.list_runs()
    assert (run.id, run.pipeline, run.status, run.host, run.reproducible) == (
        "20250101-000000-000000-abcd", "old", "completed", None, True)
    assert store.get_run(run.id).steps[0].args == {"x": 1}
    store.close()
    assert RunStore(path).schema_version() == SCHEMA_VERSION  # opens again, nothing to do


def test_a_store_from_a_newer_zgit_is_refused(tmp_path):
    path = tmp_path / "store"
    RunStore(path).close()
    db = sqlite3.connect(str(path / "runs.sqlite"))
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer zgit"):
        RunStore(path)


def test_an_unwritable_store_says_where_and_what_to_do(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="ZGIT_STORE"):
        RunStore(blocker / "store")


def test_artifacts_round_trip_large_buffers_without_a_copy(tmp_path):
    np = pytest.importorskip("numpy")
    store = RunStore(tmp_path / "store")
    array = np.arange(200_000, dtype=np.float64)
    digest = store.put({"a": array, "small": np.arange(3)})
    back = store.get(digest)
    assert (back["a"] == array).all() and back["a"].dtype == array.dtype and list(back["small"]) == [0, 1, 2]
    assert store.put({"a": array, "small": np.arange(3)}) == digest  # content-addressed
    assert not np.shares_memory(back["a"], array)


def test_a_large_artifact_is_read_whole_writable_and_checked(tmp_path):
    np = pytest.importorskip("numpy")
    store = RunStore(tmp_path / "store")
    array = np.arange(3_000_000, dtype=np.float64)  # 24 MB: read in chunks, digested alongside
    digest = store.put(array)
    back = store.get(digest)
    assert back.flags.writeable and (back == array).all()
    back[0] = -1.0  # the caller's own copy
    assert store.get(digest)[0] == 0.0
    path = store.artifact_path(digest)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifactError):
        store.get(digest)

_data = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    | st.binary(max_size=300_000),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    | st.tuples(inner, inner),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None)
@given(_data)
def test_artifact_bytes_round_trip_and_are_content_addressed(value):
    from zgit.runs.store import deserialize, serialize

    raw = serialize(value)
    assert deserialize(raw) == value
    assert serialize(deserialize(raw)) == raw  # the same value, the same bytes, the same digest
    assert deserialize(bytearray(raw)) == value
