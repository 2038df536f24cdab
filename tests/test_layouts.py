"""Issue 11: project layouts, installs and everyday mistakes, as a new user meets them.

Every test builds real git repositories; the editable installs are real ``pip install -e``
runs into a prefix of the test's own (their ``.pth`` files processed with
``site.addsitedir`` in a subprocess).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import warnings
from pathlib import Path
from typing import Any, Dict, List

import pytest

import zgit
from zgit import (
    ConfigError,
    PinNotFoundError,
    Pipeline,
    PipelineNotFoundError,
    Repository,
    Source,
    UnpinnedSourceWarning,
    load_source,
    resolve_source,
)
from zgit.audit import audit_paths
from tests._cli import zgit as run_zgit
from tests._cli import zgit_env
from tests.conftest import WorkTree, git, status
from tests.test_distributions import _can_build_wheels_offline

ROOT = Path(__file__).resolve().parent.parent

STEP = '''\
from zgit import BaseStep

VERSION = {version}


class Trainer(BaseStep):
    VERSION = {version}
'''


def _caught(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    return result, [str(w.message) for w in caught], [w.category for w in caught]


# -- 1. src layout without source_root -----------------------------------------------------


def _src_layout(repo: WorkTree) -> str:
    repo.write(".gitignore", "__pycache__/\n")
    repo.write("src/mypkg/__init__.py", "")
    repo.write("src/mypkg/steps/__init__.py", "")
    repo.write("src/mypkg/steps/train.py", STEP.format(version=1))
    return repo.commit("src layout")


def test_src_layout_without_source_root_is_refused_naming_source_root(repo):
    _src_layout(repo)
    sys.path.insert(0, str(repo.path / "src"))
    from mypkg.steps.train import Trainer

    source, messages, _ = _caught(resolve_source, Trainer)
    assert source == Source("mypkg.steps.train", "Trainer")  # never 'src.mypkg...'
    assert len(messages) == 1 and "source_root: src" in messages[0], messages
    assert status(repo) == ""


def test_src_layout_with_source_root_pins_the_imported_name_and_loads(repo):
    sha = _src_layout(repo)
    repo.write(".zgit/config.yaml", "source_root: src\n")
    repo.commit("config")
    sys.path.insert(0, str(repo.path / "src"))
    from mypkg.steps.train import Trainer

    source, messages, _ = _caught(resolve_source, Trainer)
    assert messages == [] and str(source) == f"mypkg.steps.train.Trainer@{repo.head()}"
    assert load_source(source, strategy="memory").VERSION == 1
    assert sha != repo.head()


def test_a_name_that_does_not_match_the_file_is_refused(repo):
    _src_layout(repo)
    import importlib.util

    spec = importlib.util.spec_from_file_location("renamed.thing", repo.path / "src/mypkg/steps/train.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["renamed.thing"] = module
    try:
        spec.loader.exec_module(module)
        source, messages, _ = _caught(resolve_source, module.Trainer)
    finally:
        del sys.modules["renamed.thing"]
    assert source.kind == "unpinned" and "source_root" in messages[0], messages


# -- 4. unknown config keys ----------------------------------------------------------------


@pytest.mark.parametrize("text, key, nearest", [
    ("sourceroot: src\n", "'sourceroot'", "'source_root'"),
    ("loader: {stratgy: memory}\n", "'loader.stratgy'", "'loader.strategy'"),
    ("loader:\n  lock_timout: 5\n", "'loader.lock_timout'", "'loader.lock_timeout'"),
])
def test_unknown_config_keys_name_the_key_and_the_nearest(repo, text, key, nearest):
    repo.write(".zgit/config.yaml", text)
    with pytest.raises(ConfigError) as info:
        Repository().config
    message = str(info.value)
    assert "config.yaml" in message and key in message and f"did you mean {nearest}" in message


def test_an_unknown_key_with_nothing_near_lists_the_known_keys(repo):
    repo.write(".zgit/config.yaml", "colour: blue\n")
    with pytest.raises(ConfigError, match=r"'colour'.*source_root, loader\.strategy"):
        Repository().config


def test_a_checkout_load_is_refused_on_a_typo(repo):
    """``loader: {stratgy: memory}`` must not quietly check out."""
    repo.write("steps/__init__.py", "")
    repo.write("steps/s.py", STEP.format(version=1))
    sha = repo.commit()
    repo.write(".zgit/config.yaml", "loader: {stratgy: memory}\n")
    with pytest.raises(ConfigError, match="stratgy"):
        load_source(f"steps.s.Trainer@{sha}")


# -- 10. environment variables are named ---------------------------------------------------


@pytest.mark.parametrize("variable, value", [
    ("ZGIT_LOADER_STRATEGY", "mem"),
    ("ZGIT_ON_VERSION_MISMATCH", "ignore"),
    ("ZGIT_FSYNC", "maybe"),
    ("ZGIT_LOCK_TIMEOUT", "soon"),
])
def test_a_bad_environment_variable_is_named_not_the_file(repo, monkeypatch, variable, value):
    repo.write(".zgit/config.yaml", "loader:\n  strategy: checkout\n")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        Repository().config
    message = str(info.value)
    assert f"environment variable {variable}" in message and repr(value) in message
    assert "config.yaml" not in message


# -- 11. YAML syntax errors: one line naming the file --------------------------------------


def test_yaml_syntax_error_is_one_line_naming_the_file(repo):
    repo.write("pipelines/p.yaml", "version: '1'\nname: [unclosed\nsteps: {}\n")
    with pytest.raises(ConfigError) as info:
        Repository().get_pipeline_by_name("P")
    message = str(info.value)
    assert "\n" not in message and "byte string" not in message
    assert "p.yaml" in message and "line 3" in message
    result = run_zgit("audit", cwd=repo.path)
    lines = [line for line in result.stdout.splitlines() if "bad-yaml" in line]
    assert len(lines) == 1 and "byte string" not in result.stdout, str(result)


# -- 12. a missing pipeline with a broken file elsewhere -----------------------------------


def test_not_found_lists_names_and_mentions_the_unreadable_file(repo):
    repo.write("steps/__init__.py", "")
    repo.write("steps/s.py", STEP.format(version=1))
    sha = repo.commit()
    for name in ("alpha", "beta"):
        repo.write(f"pipelines/{name}.yaml",
                   f"version: '1'\nname: {name}\nsteps:\n  t: {{source: steps.s.Trainer@{sha}}}\n")
    repo.write("pipelines/broken.yaml", "version: '1'\nname: [\n")
    with pytest.raises(PipelineNotFoundError) as info:
        Repository().get_pipeline_by_name("typo")
    message = str(info.value)
    assert info.value.names == ["alpha", "beta"]
    assert "'alpha', 'beta'" in message and "broken.yaml" in message
    assert isinstance(info.value, ConfigError)  # the contract's ConfigError, too


# -- 14. step arguments YAML cannot hold ---------------------------------------------------


@pytest.mark.parametrize("value, shown", [
    (Path("data/train.csv"), "PosixPath" if os.name != "nt" else "WindowsPath"),
    ({"nested": [Path("x")]}, "PosixPath" if os.name != "nt" else "WindowsPath"),
])
def test_step_arguments_yaml_cannot_hold_are_a_config_error(repo, value, shown):
    import enum

    repo.write("steps/__init__.py", "")
    repo.write("steps/s.py", STEP.format(version=1))
    repo.commit()
    sys.path.insert(0, str(repo.path))
    from steps.s import Trainer

    class Colour(enum.Enum):
        RED = 1

    for bad, type_name in ((value, shown), (Colour.RED, "Colour")):
        pipeline = Pipeline("P")
        pipeline.add_step("train", Trainer(data=bad))
        with pytest.raises(ConfigError) as info:
            pipeline.save()
        message = str(info.value)
        assert "'train'" in message and "'data'" in message and type_name in message
        assert "str, int, float, bool" in message
    assert not (repo.path / "pipelines" / "p.yaml").exists()


# -- 8, 9, 13: zgit show / load messages ---------------------------------------------------


def test_a_tree_or_blob_sha_is_not_a_commit(repo):
    repo.write("steps/__init__.py", "")
    repo.write("steps/s.py", STEP.format(version=1))
    repo.commit()
    tree = repo.git("rev-parse", "HEAD^{tree}").strip()
    blob = repo.git("rev-parse", "HEAD:steps/s.py").strip()
    for sha, kind in ((tree, "tree"), (blob, "blob")):
        with pytest.raises(PinNotFoundError) as info:
            load_source(f"steps.s.Trainer@{sha}")
        assert f"is a {kind}" in str(info.value) and "not a commit" in str(info.value)
        assert "fetch" not in str(info.value)
        result = run_zgit("show", f"steps.s.Trainer@{sha}", cwd=repo.path)
        assert result.returncode == 1 and "not a commit" in result.stderr, str(result)
    report = audit_paths([_pipeline_file(repo, f"steps.s.Trainer@{tree}")])
    assert "not a commit" in report.to_json()


def _pipeline_file(repo: WorkTree, source: str) -> Path:
    return repo.write("pipelines/p.yaml", f"version: '1'\nname: P\nsteps:\n  t: {{source: '{source}'}}\n")


def test_shallow_clone_says_fetch_unshallow(tmp_path):
    origin = WorkTree(tmp_path / "origin")
    origin.write("steps/__init__.py", "")
    shas = []
    for version in range(3):
        origin.write("steps/s.py", STEP.format(version=version))
        shas.append(origin.commit(f"v{version}"))
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{origin.path}", "shallow")
    clone = tmp_path / "shallow"
    old = f"steps.s.Trainer@{shas[0]}"
    with pytest.raises(PinNotFoundError) as info:
        load_source(old, repo=clone)
    assert "git fetch --unshallow" in str(info.value)
    assert "fetch --all" not in str(info.value)
    result = run_zgit("show", old, cwd=clone)
    assert result.returncode == 1 and "git fetch --unshallow" in result.stderr, str(result)
    _pipeline_file(WorkTree(clone, init=False), old)
    result = run_zgit("audit", "--format", "json", cwd=clone)
    assert "git fetch --unshallow" in result.stdout, str(result)


def test_show_of_a_missing_attribute_exits_non_zero(repo):
    repo.write("steps/__init__.py", "")
    repo.write("steps/s.py", STEP.format(version=1))
    sha = repo.commit()
    good = run_zgit("show", f"steps.s.Trainer@{sha[:10]}", cwd=repo.path)
    assert good.returncode == 0 and "class Trainer" in good.stdout, str(good)
    bad = run_zgit("show", f"steps.s.Typo@{sha[:10]}", cwd=repo.path)
    assert bad.returncode == 1 and "'Typo'" in bad.stderr and "Trainer" in bad.stderr, str(bad)
    assert bad.stdout == ""


# -- 5. namespace packages (the README's own example) --------------------------------------

README_TRAINER = '''\
from zgit import BaseStep


class MyAwesomeTrainer(BaseStep):          # steps take keyword arguments only
    def __init__(self, epochs=1):
        self.epochs = epochs

    def run(self, data):
        return data
'''


def test_namespace_packages_load_from_the_root_and_from_a_sub_directory(repo):
    repo.write("trainers/my_awesome_trainer/my_trainer_step.py", README_TRAINER)  # no __init__.py
    repo.write("notebooks/README.md", "notebooks\n")
    sha = repo.commit()
    source = f"trainers.my_awesome_trainer.my_trainer_step.MyAwesomeTrainer@{sha}"
    repo.write("pipelines/p.yaml", f"version: '1'\nname: P\nsteps:\n  training:\n"
                                   f"    source: {source}\n    args: {{epochs: 20}}\n")
    repo.commit("pipeline")
    for strategy in ("checkout", "memory"):
        result = run_zgit("load", source, "--strategy", strategy, cwd=repo.path)
        assert result.returncode == 0 and "MyAwesomeTrainer (class)" in result.stdout, str(result)
    script = textwrap.dedent("""\
        from zgit import Repository
        step = Repository().get_pipeline_by_name("P").steps["training"]
        print(type(step).__module__, step.epochs)
        """)
    result = subprocess.run([sys.executable, "-c", script], cwd=repo.path / "notebooks", env=zgit_env(),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [f"trainers.my_awesome_trainer@{sha}.my_trainer_step", "20"]
    assert status(repo) == ""


# -- 3. git-ignored generated modules ------------------------------------------------------


def test_ignored_generated_module_is_warned_by_resolve_and_audit(repo):
    repo.write(".gitignore", "_version.py\n*_pb2.py\n")
    repo.write("gen/__init__.py", "")
    repo.write("gen/steps/__init__.py", "from ._version import version\n")
    repo.write("gen/steps/s.py", STEP.format(version=1))
    repo.write("gen/steps/_version.py", "version = '1.0'\n")
    repo.write("gen/steps/proto/msg_pb2.py", "X = 1\n")
    repo.write("gen/steps/proto/__init__.py", "")
    sha = repo.commit()
    assert "_version.py" not in repo.git("ls-files")
    sys.path.insert(0, str(repo.path))
    from gen.steps.s import Trainer

    from zgit.errors import UncommittedFileWarning

    source, messages, categories = _caught(resolve_source, Trainer)
    assert source == Source("gen.steps.s", "Trainer", sha)  # still pinned: the directory is clean
    assert categories == [UncommittedFileWarning]
    assert "gen/steps/_version.py" in messages[0] and "gen/steps/proto/msg_pb2.py" in messages[0]
    _pipeline_file(repo, str(source))
    result = run_zgit("audit", "--format", "json", cwd=repo.path)
    data = json.loads(result.stdout)
    findings = data["files"][0]["steps"][0]["findings"]
    assert [f["code"] for f in findings] == ["uncommitted-file"], findings
    assert findings[0]["severity"] == "warning" and "gen/steps/_version.py" in findings[0]["message"]


def test_generated_modules_found_from_the_clean_checks_walk_equal_a_walk_of_their_own(repo):
    """resolve_source finds git-ignored generated modules from what its clean check passed
    over (one walk of the module directory, not two): the same list as walking again."""
    from zgit.gitrepo import open_repo
    from zgit.layout import uncommitted_modules

    repo.write(".gitignore", "*_pb2.py\n_version.py\ngenerated/\nbuild-out/\n*.so\n")
    repo.write("pkg/mod/__init__.py", "")
    repo.write("pkg/mod/step.py", "X = 1\n")
    repo.write("pkg/mod/kept/__init__.py", "")
    sha = repo.commit("code")
    repo.write("pkg/mod/kept/generated/forced.py", "F = 1\n")
    repo.git("add", "-f", "pkg/mod/kept/generated/forced.py")
    sha = repo.commit("a tracked file inside an ignored directory")
    for path in ("pkg/mod/_version.py", "pkg/mod/msg_pb2.py", "pkg/mod/kept/a_pb2.py",
                 "pkg/mod/kept/generated/other.py", "pkg/mod/generated/deep/g.py",
                 "pkg/mod/generated/notes.txt", "pkg/mod/build-out/x.py", "pkg/mod/ext.so",
                 "pkg/mod/not-a-package/y_pb2.py", "pkg/mod/__pycache__/z_pb2.py"):
        repo.write(path, "G = 1\n")
    git = open_repo(repo.path)
    ignored: List[str] = []
    assert git.dirty_files("pkg/mod", sha, ignored) == []
    from_walk = uncommitted_modules(git, sha, "pkg/mod")
    assert uncommitted_modules(git, sha, "pkg/mod", ignored) == from_walk
    assert from_walk == sorted([
        "pkg/mod/_version.py", "pkg/mod/msg_pb2.py", "pkg/mod/kept/a_pb2.py",
        "pkg/mod/kept/generated/other.py", "pkg/mod/generated/deep/g.py", "pkg/mod/ext.so",
    ])


# -- 16. uncaught tracebacks show pinned lines ---------------------------------------------


@pytest.mark.parametrize("strategy", ["memory", "checkout"])
def test_uncaught_traceback_shows_pinned_source_lines(repo, strategy):
    repo.write("steps/__init__.py", "")
    repo.write("steps/boom.py", "def explode():\n    raise ValueError('pinned boom')  # the pinned line\n")
    sha = repo.commit()
    repo.write("steps/boom.py", "def explode():\n    raise ValueError('working boom')  # the working line\n")
    repo.commit("v2")
    script = f"import zgit\nzgit.load_source('steps.boom.explode@{sha}', strategy='{strategy}')()\n"
    result = subprocess.run([sys.executable, "-c", script], cwd=repo.path, env=zgit_env(),
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert f"steps@{sha}/boom.py\", line 2, in explode" in result.stderr, result.stderr
    assert "raise ValueError('pinned boom')  # the pinned line" in result.stderr, result.stderr
    assert "working line" not in result.stderr
    # the same in a thread (threading's own hook prints with the interpreter's printer too)
    threaded = (f"import threading, zgit\nf = zgit.load_source('steps.boom.explode@{sha}', strategy='{strategy}')\n"
                "t = threading.Thread(target=f, name='worker')\nt.start()\nt.join()\n")
    result = subprocess.run([sys.executable, "-c", threaded], cwd=repo.path, env=zgit_env(),
                            capture_output=True, text=True)
    assert "Exception in thread worker" in result.stderr, result.stderr
    assert "raise ValueError('pinned boom')  # the pinned line" in result.stderr, result.stderr
    # an exception with no pinned frame goes to the interpreter's own hook, as before
    plain = subprocess.run([sys.executable, "-c", "import zgit\nraise KeyError('x')\n"], cwd=repo.path,
                           env=zgit_env(), capture_output=True, text=True)
    assert plain.stderr.splitlines()[-1] == "KeyError: 'x'" and 'line 2, in <module>' in plain.stderr


# -- 2 and 6: editable installs ------------------------------------------------------------

LIB_SETUP = '''\
from setuptools import setup
setup(name="zg-layouts-lib", version="0.3.0", package_dir={"": "src"}, packages=["zglib", "zglib.steps"])
'''
PLAIN_SETUP = '''\
from setuptools import setup
setup(name="zg-layouts-plain", version="0.5.0", packages=["zgplain"])
'''


@pytest.fixture(scope="module")
def editable(tmp_path_factory) -> Dict[str, Any]:
    """Two projects installed with ``pip install -e`` into a prefix: ``lib`` (src layout)
    lives in a git work tree, ``plain`` in a directory that is not one."""
    base = tmp_path_factory.mktemp("editable")
    lib = WorkTree(base / "lib")
    lib.write(".gitignore", "*.egg-info/\nbuild/\n__pycache__/\n")
    lib.write("setup.py", LIB_SETUP)
    lib.write("src/zglib/__init__.py", "")
    lib.write("src/zglib/steps/__init__.py", "")
    lib.write("src/zglib/steps/train.py", STEP.format(version=1))
    v1 = lib.commit("v1")
    plain = base / "plain"
    (plain / "zgplain").mkdir(parents=True)
    (plain / "setup.py").write_text(PLAIN_SETUP)
    (plain / "zgplain" / "__init__.py").write_text("")
    (plain / "zgplain" / "steps.py").write_text(STEP.format(version=5))
    prefix = base / "prefix"
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--prefix", str(prefix)]
    if _can_build_wheels_offline():
        command += ["--no-build-isolation", "--no-index"]
    result = subprocess.run(command + ["-e", str(lib.path), "-e", str(plain)], capture_output=True, text=True,
                            env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"))
    if result.returncode != 0 and "--no-index" not in command and any(
        text in result.stderr for text in ("Could not find a version", "NewConnectionError", "No matching distribution")
    ):
        pytest.skip("cannot build an editable install: no 'wheel' here and the package index is unreachable")
    assert result.returncode == 0, result.stdout + result.stderr
    site_dir = sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)})
    assert list(Path(site_dir).glob("zg_layouts_lib-0.3.0.dist-info"))
    lib.git("status", "--porcelain")
    return {"lib": lib, "v1": v1, "plain": plain, "site": site_dir, "base": base}


def _run(editable: Dict[str, Any], code: str, cwd: Path) -> Dict[str, Any]:
    script = (
        "import json, site, sys, warnings\n"
        f"site.addsitedir({editable['site']!r})\n"
        "warnings.simplefilter('always')\n"
        "import zgit\n"
        "out = {}\n"
        + textwrap.dedent(code)
        + "print(json.dumps(out))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=zgit_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    out["stderr"] = result.stderr
    return out


RESOLVE = """\
with warnings.catch_warnings(record=True) as caught:
    from zglib.steps.train import Trainer
    out["source"] = str(zgit.resolve_source(Trainer))
out["warnings"] = [str(w.message) for w in caught if issubclass(w.category, zgit.UnpinnedSourceWarning)]
"""


def test_editable_code_in_a_work_tree_is_pinned_by_its_commit_from_any_directory(editable, tmp_path):
    lib: WorkTree = editable["lib"]
    experiments = WorkTree(tmp_path / "experiments")
    experiments.write("README.md", "experiments\n")
    experiments.commit()
    nowhere = tmp_path / "jobs"
    nowhere.mkdir()
    v1 = lib.head()
    for cwd in (experiments.path, nowhere):
        out = _run(editable, RESOLVE, cwd)
        assert out["source"] == f"zglib.steps.train.Trainer@{v1}", out
        assert out["warnings"] == []

    # uncommitted edits: unpinned with the usual warning, never '@zg_layouts_lib_0.3.0'
    lib.write("src/zglib/steps/train.py", STEP.format(version=2))
    try:
        out = _run(editable, RESOLVE, experiments.path)
        assert out["source"] == "zglib.steps.train.Trainer", out
        assert len(out["warnings"]) == 1 and "src/zglib/steps/train.py" in out["warnings"][0]

        # the pin loads from any directory, from the work tree that holds the module
        load = f"""\
            cls = zgit.load_source("zglib.steps.train.Trainer@{v1}", strategy="memory")
            out["version"] = cls.VERSION
            out["module"] = cls.__module__
            """
        for cwd in (experiments.path, nowhere):
            out = _run(editable, load, cwd)
            assert out["version"] == 1 and out["module"] == f"zglib.steps@{v1}.train", out
    finally:
        lib.write("src/zglib/steps/train.py", STEP.format(version=1))
    assert lib.status() == ""

    # checkout strategy, after the code moved on: the v1 pin, the work tree restored
    lib.write("src/zglib/steps/train.py", STEP.format(version=3))
    v3 = lib.commit("v3")
    before = lib.snapshot()
    out = _run(editable, f"""\
        cls = zgit.load_source("zglib.steps.train.Trainer@{v1}", strategy="checkout")
        out["version"] = cls.VERSION
        """, nowhere)
    assert out["version"] == 1
    assert lib.status() == "" and lib.snapshot() == before and lib.head() == v3
    out = _run(editable, RESOLVE, experiments.path)
    assert out["source"] == f"zglib.steps.train.Trainer@{v3}"

    # audit and show agree with load: the pin is found in the work tree that holds the module
    _pipeline_file(experiments, f"zglib.steps.train.Trainer@{v1}")
    experiments.commit("pipeline")
    for args, code, text in (
        (["audit", "--format", "json"], 0, '"drift"'),
        (["show", f"zglib.steps.train.Trainer@{v1}"], 0, "VERSION = 1"),
        (["pin", "--check"], 0, "every git source is pinned"),
    ):
        result = _cli(editable, args, experiments.path)
        assert result.returncode == code and text in result.stdout, result.stdout + result.stderr
    assert json.loads(_cli(editable, ["audit", "--format", "json"], experiments.path).stdout)["summary"]["errors"] == 0
    result = _cli(editable, ["load", f"zglib.steps.train.Trainer@{v1}", "--strategy", "memory"], nowhere)
    assert result.returncode == 0 and f"zglib.steps@{v1}.train.Trainer" in result.stdout, result.stderr



def _cli(editable: Dict[str, Any], args: List[str], cwd: Path) -> "subprocess.CompletedProcess[str]":
    """The zgit command line with the editable installs' site directory on sys.path."""
    script = (
        "import site, sys\n"
        f"site.addsitedir({editable['site']!r})\n"
        "from zgit.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    return subprocess.run([sys.executable, "-c", script, *args], cwd=cwd, env=zgit_env(),
                          capture_output=True, text=True)


def test_editable_install_outside_git_keeps_its_distribution_pin_and_zgit_show_reads_it(editable, tmp_path):
    repo = WorkTree(tmp_path / "project")
    repo.commit("empty")
    out = _run(editable, """\
        from zgplain.steps import Trainer
        source = zgit.resolve_source(Trainer)
        out["source"] = str(source)
        out["same"] = zgit.load_source(source) is Trainer
        """, repo.path)
    assert out["source"] == "zgplain.steps.Trainer@zg_layouts_plain_0.5.0" and out["same"], out
    for source, code, text in (
        ("zgplain.steps.Trainer@zg_layouts_plain_0.5.0", 0, "VERSION = 5"),
        ("zgplain.steps.Typo@zg_layouts_plain_0.5.0", 1, "'Typo'"),
    ):
        result = _cli(editable, ["show", source], repo.path)
        assert result.returncode == code, result.stderr
        assert text in (result.stdout if code == 0 else result.stderr)


def test_zgit_show_of_zgit_builtins_from_an_editable_install(tmp_path):
    """The demo's own built-ins: ``zgit.steps...@zgit_<version>`` when zgit is editable."""
    from zgit.distributions import installed_version

    if installed_version("zgit") is None:
        pytest.skip("zgit is not installed as a distribution here")
    repo = WorkTree(tmp_path / "project")
    repo.commit("empty")
    from zgit.steps.split import RandomSplit

    source = resolve_source(RandomSplit, repo=repo.path)
    assert source.kind == "dist"
    result = run_zgit("show", str(source), cwd=repo.path)
    assert result.returncode == 0 and "class RandomSplit" in result.stdout, str(result)


# -- resolving from outside any repository, many times --------------------------------------


@pytest.mark.skipif(sys.implementation.name != "cpython" or sys.version_info >= (3, 12),
                    reason="None has no reference count to lose")
def test_repository_discovery_misses_keep_none_alive(tmp_path):
    """pygit2's discover_repository returns None without a reference; each miss used to take
    one from None, and a job runner resolving from outside any repository crashed
    ("Fatal Python error: none_dealloc").  In a subprocess: the old code aborts it."""
    outside = tmp_path / "nowhere"
    outside.mkdir()
    script = textwrap.dedent("""\
        import sys
        from zgit.errors import NotARepositoryError
        from zgit.gitrepo import open_repo
        before = sys.getrefcount(None)
        for _ in range(3000):
            try:
                open_repo(".")
            except NotARepositoryError:
                pass
        print(sys.getrefcount(None) - before)
        """)
    result = subprocess.run([sys.executable, "-c", script], cwd=outside, env=zgit_env(),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > -1000
