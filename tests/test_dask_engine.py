"""The Dask engine (issue 13): pinned steps on workers that have no checkout.

The scheduler and its workers are separate processes (``python -m dask scheduler`` /
``worker``), listening on 127.0.0.1 only, started in a temporary directory outside any
repository with a PYTHONPATH that reaches no project: what they import of a step comes
from the code bundles, or not at all.  They are stopped by process id when the module's
tests are done.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="the Dask engine needs the 'dask' extra")

from zgit import Pipeline, Repository, SourceNotFoundError  # noqa: E402
from zgit.engines import StepCall, get_engine  # noqa: E402
from zgit.engines.dask import DaskEngine, missing_pins, run_step  # noqa: E402
from zgit.source import Source  # noqa: E402

from tests._cli import zgit as zgit_cli  # noqa: E402

STEP = '''\
import os
import sys

from zgit import BaseStep
from .model import Model

BUMP = {bump}


class Scale(BaseStep):
    def __init__(self, factor=2):
        self.factor = factor

    def run(self, data):
        return [x * self.factor + BUMP for x in (data or [1, 2, 3])]


class Fit(BaseStep):
    def run(self, data):
        return Model(sum(data))


class Whoami(BaseStep):
    def run(self, data):
        import time
        time.sleep(0.3)  # both versions are on the worker at once
        return {{"bump": BUMP, "pid": os.getpid()}}


class StepFailed(Exception):
    pass


class Boom(BaseStep):
    def run(self, data):
        raise StepFailed(f"boom {{BUMP}}")


class Probe(BaseStep):
    def run(self, data):
        import importlib
        from zgit import resolve_source
        from zgit.errors import NotARepositoryError
        from zgit.gitrepo import open_repo

        try:
            found = str(open_repo(os.getcwd()).root)
        except NotARepositoryError:
            found = None
        try:
            importlib.import_module("steps.scale.step")
            plain = "imported"
        except ImportError as exc:
            plain = type(exc).__name__
        from importlib.resources import files
        return {{"cwd": os.getcwd(), "repository": found, "plain_import": plain,
                "file": __file__, "name": __name__, "source": str(resolve_source(Scale)),
                "resource": files(__package__).joinpath("model.py").read_text()}}
'''

MODEL = '''\
class Model:
    def __init__(self, total):
        self.total = total

    def predict(self, x):
        return self.total * x
'''


def write_project(repo, bump):
    repo.write(".gitignore", "__pycache__/\n*.pyc\n")
    repo.write("steps/__init__.py", "")
    repo.write("steps/scale/__init__.py", "")
    repo.write("steps/scale/step.py", STEP.format(bump=bump))
    repo.write("steps/scale/model.py", MODEL)
    if not (repo.path / ".zgit").exists():
        Repository.init(repo.path)
    return repo.commit(f"bump {bump}")


@pytest.fixture
def project(repo):
    repo.first = write_project(repo, 0)
    repo.second = write_project(repo, 100)
    return repo


def source(name, sha):
    return Source.parse(f"steps.scale.step.{name}@{sha}")


# -- the cluster: separate processes, loopback only ------------------------------------------


def _isolated_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "ZGIT_", "GIT_"))}
    env["PYTHONPATH"] = ""  # reaches no project; zgit itself is installed in the interpreter
    env["DASK_DISTRIBUTED__WORKER__DAEMON"] = "False"
    return env


class Cluster:
    """A scheduler and workers, each its own process, in ``home`` (outside any repository)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.procs = []
        scheduler_file = home / "scheduler.json"
        # --dashboard-address too: its HTTP server (metrics, health) runs even without the
        # dashboard, and ":port" would listen on every interface
        self._spawn("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                    "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(scheduler_file))
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            if time.monotonic() > deadline:
                raise RuntimeError("the dask scheduler did not start within 60 s")
            time.sleep(0.1)
        time.sleep(0.2)  # the file is written in one go, but be safe
        self.address = json.loads(scheduler_file.read_text())["address"]
        assert self.address.startswith("tcp://127.0.0.1:")

    def _spawn(self, *args: str) -> subprocess.Popen:
        log = open(self.home / f"{args[0]}-{len(self.procs)}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=self.home, env=_isolated_env(),
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self.procs.append(proc)
        return proc

    def add_worker(self) -> subprocess.Popen:
        return self._spawn("worker", self.address, "--host", "127.0.0.1", "--nthreads", "2",
                           "--no-nanny", "--no-dashboard", "--dashboard-address", "127.0.0.1:0",
                           "--local-directory", str(self.home / "work"))

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=20)

    def close(self) -> None:
        for proc in reversed(self.procs):  # workers first, the scheduler last
            self.stop(proc)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    home = tmp_path_factory.mktemp("dask-cluster")
    assert subprocess.run(["git", "rev-parse", "--git-dir"], cwd=home, capture_output=True).returncode != 0
    running = Cluster(home)
    try:
        running.add_worker()
        yield running
        # every socket the cluster listens on is on the loopback address
        import psutil

        for proc in running.procs:
            if proc.poll() is None:
                listening = [c.laddr for c in psutil.Process(proc.pid).net_connections("inet")
                             if c.status == psutil.CONN_LISTEN]
                assert listening and all(addr.ip == "127.0.0.1" for addr in listening), listening
    finally:
        running.close()


@pytest.fixture
def engine(project, cluster):
    running = DaskEngine(Repository(project.path), address=cluster.address, timeout=60)
    with running:
        running.check([])  # a worker is there
        yield running


# -- tests --------------------------------------------------------------------------------------


def test_a_task_runs_from_the_bundle_without_repository_or_package(project, engine, cluster):
    pin = source("Probe", project.first)
    engine.prepare([pin])
    got = engine.execute(StepCall("probe", pin), None)
    assert Path(got["cwd"]).resolve() == cluster.home.resolve()
    assert got["repository"] is None  # no git repository from the worker's directory
    assert got["plain_import"] == "ModuleNotFoundError"  # the package exists only as the pin
    assert got["name"] == f"steps.scale@{project.first}.step"
    assert got["file"].startswith("<zgit-bundle>/steps/scale@" + project.first)
    assert got["source"] == f"steps.scale.step.Scale@{project.first}"  # resolve_source on the worker
    assert got["resource"] == MODEL  # importlib.resources reads the bundle


def test_two_shas_of_one_step_run_on_one_worker_at_once_and_differ(project, engine):
    first, second = source("Whoami", project.first), source("Whoami", project.second)
    engine.prepare([first, second])
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda pin: engine.execute(StepCall("who", pin), None), [first, second])
    assert (a["bump"], b["bump"]) == (0, 100)
    assert a["pid"] == b["pid"] != os.getpid()  # one worker process, both versions
    scaled = [engine.execute(StepCall("scale", source("Scale", sha), {"factor": 3}), [1, 2])
              for sha in (project.first, project.second)]
    assert scaled == [[3, 6], [103, 106]]


def test_an_instance_returned_from_a_worker_is_the_drivers_pinned_class(project, engine):
    from zgit import load_source

    fit = source("Fit", project.first)
    engine.prepare([fit])
    model = engine.execute(StepCall("fit", fit), [1, 2, 3])
    assert type(model) is load_source(f"steps.scale.model.Model@{project.first}")
    assert type(model).__module__ == f"steps.scale@{project.first}.model"
    assert model.predict(2) == 12
    # and a pinned instance goes to a worker and back
    again = engine.execute(StepCall("identity", source("Scale", project.first), {"factor": 1}), [model.total])
    assert again == [6]


def test_a_worker_that_joins_later_gets_the_pins_before_its_first_task(project, engine, cluster):
    pins = [source("Scale", project.first), source("Scale", project.second)]
    engine.prepare(pins)
    keys = [f"steps.scale@{project.first}", f"steps.scale@{project.second}"]
    before = set(engine.client.scheduler_info()["workers"])
    late = cluster.add_worker()
    try:
        engine.client.wait_for_workers(len(before) + 1, timeout=60)
        workers = sorted(engine.client.scheduler_info()["workers"])
        [newcomer] = set(workers) - before
        answers = engine.client.run(missing_pins, keys)
        assert sorted(answers) == workers and all(missing == [] for missing in answers.values())
        engine.check(keys)
        # a task placed on the newcomer runs the pinned code
        import pickle

        out = engine.client.submit(run_step, str(pins[1]), f"steps.scale@{project.second}.step", (keys[1],),
                                   pickle.dumps(({"factor": 1}, [1])), workers=[newcomer], pure=False)
        assert pickle.loads(out.result(timeout=60)) == [101]
    finally:
        cluster.stop(late)


def test_a_missing_pin_fails_within_bounded_time_naming_it(project, engine):
    import pickle

    missing = "steps.scale@" + "0" * 40
    started = time.monotonic()
    with pytest.raises(SourceNotFoundError, match=missing):
        engine.check([missing])
    future = engine.client.submit(run_step, f"steps.scale.step.Scale@{'0' * 40}",
                                  f"steps.scale@{'0' * 40}.step", (missing,),
                                  pickle.dumps(({}, None)), pure=False)
    with pytest.raises(SourceNotFoundError, match=missing):
        future.result(timeout=60)
    assert time.monotonic() - started < 60


def test_a_steps_own_exception_comes_back_as_the_drivers_pinned_class(project, engine):
    from zgit import load_source

    boom = source("Boom", project.first)
    engine.prepare([boom])
    with pytest.raises(Exception, match="boom 0") as caught:
        engine.execute(StepCall("boom", boom), None)
    assert type(caught.value) is load_source(f"steps.scale.step.StepFailed@{project.first}")


def test_unpinned_steps_are_refused_before_anything_is_submitted(project, engine):
    from zgit.errors import SourceError

    with pytest.raises(SourceError, match="not pinned"):
        engine.prepare([Source.parse("steps.scale.step.Scale")])


def test_a_step_importing_modules_outside_its_directory_is_refused_before_submitting(project, engine):
    from zgit.errors import SourceError

    project.write("common/__init__.py", "")
    project.write("common/util.py", "OFFSET = 1\n")
    project.write("steps/scale/step.py", "from common.util import OFFSET\n" + STEP.format(bump=7))
    sha = project.commit("outside import")
    key = f"steps.scale@{sha}"
    with pytest.raises(SourceError, match=r"common\.util \(common/util\.py, imported at steps/scale/step\.py:1\)"):
        engine.prepare([source("Scale", sha)])
    assert all(missing == [key] for missing in engine.client.run(missing_pins, [key]).values())


def _pipeline(project):
    sys.path.insert(0, str(project.path))
    for name in [n for n in sys.modules if n == "steps" or n.startswith("steps.")]:
        del sys.modules[name]
    importlib.invalidate_caches()
    working = importlib.import_module("steps.scale.step")
    pipeline = Pipeline("dasked")
    pipeline.add_step("scale", working.Scale(factor=2))
    pipeline.add_step("fit", working.Fit())
    return pipeline


def _steps(run):
    return [(s.name, s.source, s.code_identity, s.args, s.input_digest, s.output_digest, s.cache_key)
            for s in run.steps]


def test_a_run_is_recorded_alike_by_both_engines_and_each_one_hits_the_others_cache(project, engine,
                                                                                       monkeypatch):
    repository = Repository(project.path)
    pipeline = _pipeline(project)
    monkeypatch.setenv("ZGIT_DISABLE_CACHE", "1")
    pipeline.run([1, 2], repo=project.path, engine="local")
    local = repository.get_run(repository.runs(limit=1)[0].id)
    outputs = pipeline.run([1, 2], repo=project.path, engine=engine)
    dasked = repository.get_run(repository.runs(limit=1)[0].id)
    assert local.id != dasked.id and local.status == dasked.status == "completed"
    assert _steps(local) == _steps(dasked) and all(s.output_digest for s in dasked.steps)
    assert outputs["scale"] == [102, 104] and outputs["fit"].total == 206
    monkeypatch.delenv("ZGIT_DISABLE_CACHE")
    pipeline.run([5], repo=project.path, engine="local")        # caches [5]
    pipeline.run([5], repo=project.path, engine=engine)         # a hit of the local run
    hit = repository.get_run(repository.runs(limit=1)[0].id)
    assert all(s.cached for s in hit.steps)
    pipeline.run([6], repo=project.path, engine=engine)         # caches [6] on dask
    pipeline.run([6], repo=project.path, engine="local")
    hit = repository.get_run(repository.runs(limit=1)[0].id)
    assert all(s.cached for s in hit.steps)


def test_config_and_cli_choose_the_dask_engine_and_its_address(project, cluster):
    pipeline = _pipeline(project)
    pipeline.save(project.path)
    project.write(".zgit/config.yaml", f"engine:\n  name: dask\n  address: {cluster.address}\n")
    repository = Repository(project.path)
    assert (repository.config.engine, repository.config.engine_address) == ("dask", cluster.address)
    outputs = pipeline.run([1], repo=project.path, enable_cache=False)
    assert outputs["scale"] == [102]
    project.write(".zgit/config.yaml", "")
    result = zgit_cli("run", "dasked", "--engine", "dask", "--address", cluster.address, "--no-cache",
                      cwd=project.path, timeout=120)
    assert result.returncode == 0, str(result)
    assert "2 executed" in result.stdout


def test_engine_config_errors_name_the_key(project):
    from zgit.errors import ConfigError

    project.write(".zgit/config.yaml", "engine:\n  name: ray\n")
    with pytest.raises(ConfigError, match="engine.name"):
        Repository(project.path).config
    project.write(".zgit/config.yaml", "engine:\n  adress: tcp://127.0.0.1:1\n")
    with pytest.raises(ConfigError, match="engine.adress"):
        Repository(project.path).config


@pytest.mark.slow
def test_without_an_address_a_local_cluster_is_started_for_the_run_and_shut_down(project):
    import psutil

    def children():
        # multiprocessing's resource tracker serves this process, not the cluster
        return {p.pid: " ".join(p.cmdline()) for p in psutil.Process().children(recursive=True)
                if "resource_tracker" not in " ".join(p.cmdline())}

    before = set(children())
    pipeline = _pipeline(project)
    outputs = pipeline.run([1], repo=project.path, engine="dask", enable_cache=False)
    assert outputs["scale"] == [102] and outputs["fit"].total == 102
    deadline = time.monotonic() + 30
    while set(children()) - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert {pid: cmd for pid, cmd in children().items() if pid not in before} == {}
    assert isinstance(get_engine("dask", Repository(project.path)), DaskEngine)


@pytest.mark.slow
def test_a_worker_that_cannot_install_a_bundle_leaves_the_cluster_saying_why(project, tmp_path_factory):
    import dataclasses

    from distributed import Client

    from zgit import BundleError
    from zgit.engines.bundle import build_for_source
    from zgit.engines.dask import BundlePlugin

    bundle = build_for_source(Repository(project.path), source("Scale", project.first))
    files = tuple(dataclasses.replace(f, data=b"import os\n") if f.path == "step.py" else f for f in bundle.files)
    tampered = dataclasses.replace(bundle, files=files).to_bytes()
    own = Cluster(tmp_path_factory.mktemp("dask-tampered"))
    try:
        worker = own.add_worker()
        with Client(own.address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(1, timeout=60)
            with pytest.raises(BundleError, match=bundle.key):
                client.register_plugin(BundlePlugin(bundle.key, tampered))
            worker.wait(timeout=60)  # it left the cluster
        log = next(own.home.glob("worker-*.log")).read_text(errors="replace")
        assert f"cannot install code bundle {bundle.key}" in log
    finally:
        own.close()


# -- sweeps ------------------------------------------------------------------------------------


def _sweep_pipeline(project):
    working = _pipeline(project) and importlib.import_module("steps.scale.step")
    pipeline = Pipeline("sweep")
    pipeline.add_step("prep", working.Scale(factor=2))
    pipeline.add_step("train", working.Scale(factor=1))
    pipeline.save(project.path)
    return pipeline


def _runs(repository, pipeline):
    return [repository.get_run(r.id) for r in repository.runs(pipeline)]


def test_a_sweep_on_dask_runs_every_variant_as_its_own_run_and_the_shared_step_once(project, cluster):
    _sweep_pipeline(project)
    result = zgit_cli("run", "sweep", "--engine", "dask", "--address", cluster.address,
                      "--set", "train.factor=10,20,40", cwd=project.path, timeout=120)
    assert result.returncode == 0, str(result)
    assert sorted(line.split("]")[0] for line in result.stdout.splitlines()) == [
        "[train.factor=10", "[train.factor=20", "[train.factor=40"]
    runs = _runs(Repository(project.path), "sweep")
    assert len(runs) == 3 and all(r.status == "completed" for r in runs)
    assert sorted(r.steps[1].args["factor"] for r in runs) == [10, 20, 40]
    prep = [r.steps[0] for r in runs]
    assert sum(not s.cached for s in prep) == 1 and len({s.output_digest for s in prep}) == 1
    assert all(not r.steps[1].cached for r in runs)


def test_sweep_values_combine_and_bad_assignments_name_the_problem(project):
    from zgit.errors import ConfigError
    from zgit.runs.sweep import parse_assignment, run_sweep, variants

    _sweep_pipeline(project)
    repository = Repository(project.path)
    config = repository.get_pipeline_config("sweep")
    assignments = [parse_assignment("prep.factor=1,2"), parse_assignment("train.factor=0.5, 3")]
    assert assignments[1].values == (0.5, 3)
    labels = [label for label, _ in variants(config, assignments)]
    assert labels == ["prep.factor=1 train.factor=0.5", "prep.factor=1 train.factor=3",
                      "prep.factor=2 train.factor=0.5", "prep.factor=2 train.factor=3"]
    results = run_sweep(config, assignments, repo=repository, engine="local")
    # prep: x * factor + 100 of [1, 2, 3]; train: the same of prep's output
    assert [r.outputs["train"] for _, r in results] == [[150.5, 151.0, 151.5], [403, 406, 409],
                                                         [151.0, 152.0, 153.0], [406, 412, 418]]
    for bad, match in [("train=1", "STEP.ARG=VALUE"), ("nostep.factor=1", "no step 'nostep'"),
                       ("train.nothing=1", "no argument 'nothing'"), ("train.factor=", "STEP.ARG=VALUE"),
                       ("train.factor=[1]", "not a scalar"), ("train.factor=[1,2", "not valid YAML")]:
        with pytest.raises(ConfigError, match=match):
            variants(config, [parse_assignment(bad)])
    result = zgit_cli("run", "sweep", "--set", "train.nothing=1", cwd=project.path)
    assert result.returncode == 1 and "no argument 'nothing'" in result.stderr, str(result)
    result = zgit_cli("run", "sweep", "--address", "tcp://127.0.0.1:1", cwd=project.path)
    assert result.returncode == 2 and "--engine dask" in result.stderr, str(result)


@pytest.mark.slow
def test_a_cluster_without_workers_fails_within_the_timeout_naming_the_pins(project, tmp_path_factory):
    own = Cluster(tmp_path_factory.mktemp("dask-empty"))
    try:
        with DaskEngine(Repository(project.path), address=own.address, timeout=3) as engine:
            started = time.monotonic()
            with pytest.raises(SourceNotFoundError, match=f"no Dask worker joined.*steps.scale@{project.first}"):
                engine.prepare([source("Scale", project.first)])
            assert time.monotonic() - started < 60
    finally:
        own.close()
