"""Distribution pins (@<dist>_<version>): throwaway distributions in temporary site dirs.

Every distribution here is real files: a package plus a ``*.dist-info`` directory with
METADATA, RECORD and top_level.txt (and direct_url.json for editable installs), found by
importlib-metadata through ``sys.path``.  Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Dict, Iterable, Optional

import pytest

import zgit
from zgit import Repository, Source, SourceNotFoundError, UnpinnedSourceWarning, VersionMismatchError
from zgit import distributions as dists
from zgit.distributions import distribution_pin, installed_version, load_distribution_source
from zgit.errors import VersionMismatchWarning
from zgit.source import normalize_dist_name
from tests.conftest import WorkTree

ROOT = Path(__file__).resolve().parent.parent

THING = '''\
VERSION = {version!r}


class Thing:
    version = {version!r}

    def __init__(self, **kwargs):
        self.args = dict(kwargs)

    def run(self, data):
        return data
'''


def install(
    site: Path,
    name: str,
    version: str,
    files: Dict[str, str],
    *,
    top_level: Optional[Iterable[str]] = None,
    editable_dir: Optional[Path] = None,
    record: bool = True,
) -> Path:
    """Install distribution ``name`` ``version`` into ``site``, as pip lays it out.

    ``files``: relative path -> text, written into ``site`` and listed in RECORD (for an
    editable install they are written into ``editable_dir`` instead and RECORD lists
    only the dist-info and a .pth file, as setuptools' PEP 660 installs do).
    """
    site.mkdir(parents=True, exist_ok=True)
    info = site / f"{normalize_dist_name(name)}-{version}.dist-info"
    info.mkdir()
    base = editable_dir if editable_dir is not None else site
    for rel, text in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "INSTALLER").write_text("pip\n")
    listed = [f"{info.name}/{n}" for n in ("METADATA", "INSTALLER", "top_level.txt")]
    if editable_dir is not None:
        pth = f"__editable__.{normalize_dist_name(name)}-{version}.pth"
        (site / pth).write_text(str(editable_dir) + "\n")
        listed.append(pth)
        (info / "direct_url.json").write_text(
            json.dumps({"url": editable_dir.resolve().as_uri(), "dir_info": {"editable": True}})
        )
        listed.append(f"{info.name}/direct_url.json")
    else:
        listed.extend(files)
    tops = top_level if top_level is not None else sorted({rel.split("/")[0].removesuffix(".py") for rel in files})
    (info / "top_level.txt").write_text("".join(f"{t}\n" for t in tops))
    if record:
        (info / "RECORD").write_text("".join(f"{p},,\n" for p in listed) + f"{info.name}/RECORD,,\n")
    return info


def package(top: str, version: str, module: str = "mod") -> Dict[str, str]:
    return {f"{top}/__init__.py": "", f"{top}/{module}.py": THING.format(version=version)}


@pytest.fixture
def env(tmp_path, monkeypatch):
    """sys.path and sys.modules restored afterwards; cwd outside any repository."""
    monkeypatch.chdir(tmp_path)
    saved_path = list(sys.path)
    before = set(sys.modules)
    dists.clear_caches()

    class Env:
        root = tmp_path

        def use(self, *dirs: Path) -> None:
            """Put ``dirs`` first on sys.path (replacing earlier test dirs), forget imports."""
            sys.path[:] = [str(d) for d in dirs] + saved_path
            self.forget()

        def forget(self) -> None:
            for name in set(sys.modules) - before:
                module = sys.modules.get(name)
                where = str(getattr(module, "__file__", "") or "") + str(getattr(module, "__path__", ""))
                if str(tmp_path) in where:
                    del sys.modules[name]
            from zgit.loader import forget_loaded

            forget_loaded()

    e = Env()
    yield e
    sys.path[:] = saved_path
    e.forget()
    dists.clear_caches()


def test_regular_install_resolves_and_loads_untouched(env):
    site = env.root / "site"
    install(site, "Fake-Dist.ZG", "1.0.0", package("zgfake", "1.0.0"))
    env.use(site)
    from zgfake.mod import Thing  # noqa: E402  (installed just now)

    assert distribution_pin("zgfake.mod", sys.modules["zgfake.mod"].__file__) == ("fake_dist_zg", "1.0.0")
    assert installed_version("fake-dist-zg") == installed_version("Fake_Dist.ZG") == "1.0.0"
    source = zgit.resolve_source(Thing)
    assert str(source) == "zgfake.mod.Thing@fake_dist_zg_1.0.0"
    assert source.kind == "dist" and source.distribution == "fake_dist_zg" and source.version == "1.0.0"
    loaded = zgit.load_source(source)
    assert loaded is Thing
    assert "__zgit_source__" not in vars(loaded)
    # A distribution-pinned object resolves back to its pin.
    assert zgit.resolve_source(loaded) == source


def test_two_versions_in_two_site_dirs(env):
    v1, v2 = env.root / "v1", env.root / "v2"
    install(v1, "zg-twice", "1.0.0", package("zgtwice", "1.0.0"))
    install(v2, "zg-twice", "2.0.0", package("zgtwice", "2.0.0"))

    env.use(v1)
    import zgtwice.mod

    assert zgtwice.mod.VERSION == "1.0.0"
    assert distribution_pin("zgtwice.mod", zgtwice.mod.__file__) == ("zg_twice", "1.0.0")
    src1 = Source.parse("zgtwice.mod.Thing@zg_twice_1.0.0")
    src2 = Source.parse("zgtwice.mod.Thing@zg_twice_2.0.0")
    assert load_distribution_source(src1, "error").version == "1.0.0"

    # The other version, no explicit cache clearing: sys.path changed.
    env.use(v2)
    import zgtwice.mod as mod2

    assert mod2.VERSION == "2.0.0"
    assert distribution_pin("zgtwice.mod", mod2.__file__) == ("zg_twice", "2.0.0")
    assert installed_version("zg_twice") == "2.0.0"
    assert str(zgit.resolve_source(mod2.Thing)) == "zgtwice.mod.Thing@zg_twice_2.0.0"
    assert load_distribution_source(src2, "error").version == "2.0.0"
    with pytest.raises(VersionMismatchError) as info:
        load_distribution_source(src1, "error")
    message = str(info.value)
    assert "1.0.0" in message and "2.0.0" in message
    assert "pip install 'zg-twice==1.0.0'" in message

    # Both copies on sys.path: each file belongs to the copy whose RECORD lists it.
    env.use(v2, v1)
    assert distribution_pin("zgtwice.mod", str(v1 / "zgtwice" / "mod.py")) == ("zg_twice", "1.0.0")
    assert distribution_pin("zgtwice.mod", str(v2 / "zgtwice" / "mod.py")) == ("zg_twice", "2.0.0")
    assert installed_version("zg_twice") == "2.0.0"  # the first one, the one Python imports


def test_module_imported_from_another_copy_is_a_mismatch(env):
    v1, v2 = env.root / "v1", env.root / "v2"
    install(v1, "zg-stale", "1.0.0", package("zgstale", "1.0.0"))
    install(v2, "zg-stale", "2.0.0", package("zgstale", "2.0.0"))
    env.use(v1)
    import zgstale.mod  # noqa: F401  version 1 is imported ...

    sys.path.insert(0, str(v2))  # ... then version 2 is installed earlier on sys.path
    with pytest.raises(VersionMismatchError, match=r"imported from zg_stale 1\.0\.0"):
        load_distribution_source(Source.parse("zgstale.mod.Thing@zg_stale_2.0.0"), "error")


def test_namespace_package_shared_by_two_distributions(env):
    site = env.root / "site"
    install(site, "zgns-alpha", "1.0", {"zgns/alpha/__init__.py": "", "zgns/alpha/core.py": THING.format(version="a")},
            top_level=["zgns"])
    install(site, "zgns.Beta", "3.1", {"zgns/beta/__init__.py": "", "zgns/beta/core.py": THING.format(version="b")},
            top_level=["zgns"])
    (site / "zgns" / "stray.py").write_text("X = 1\n")  # in the namespace, in no RECORD
    env.use(site)
    import zgns.alpha.core
    import zgns.beta.core
    import zgns.stray

    assert not hasattr(zgns, "__file__") or zgns.__file__ is None  # a namespace package
    assert distribution_pin("zgns.alpha.core", zgns.alpha.core.__file__) == ("zgns_alpha", "1.0")
    assert distribution_pin("zgns.beta.core", zgns.beta.core.__file__) == ("zgns_beta", "3.1")
    assert distribution_pin("zgns.beta", zgns.beta.__file__) == ("zgns_beta", "3.1")
    assert distribution_pin("zgns.stray", zgns.stray.__file__) is None
    assert str(zgit.resolve_source(zgns.beta.core.Thing)) == "zgns.beta.core.Thing@zgns_beta_3.1"
    assert load_distribution_source(Source.parse("zgns.alpha.core.Thing@zgns_alpha_1.0"), "error").version == "a"


def test_name_normalization(env):
    site = env.root / "site"
    install(site, "Scikit_Learn.Fake", "1.5.2", package("zgsklearn", "1.5.2"))
    env.use(site)
    import zgsklearn.mod

    assert distribution_pin("zgsklearn.mod", zgsklearn.mod.__file__) == ("scikit_learn_fake", "1.5.2")
    for spelling in ("scikit-learn-fake", "scikit_learn_fake", "SCIKIT.LEARN-FAKE", "Scikit_Learn.Fake"):
        assert installed_version(spelling) == "1.5.2"
    # A pin written with another spelling of the name still loads.
    assert load_distribution_source(Source.parse("zgsklearn.mod.Thing@Scikit.Learn_Fake_1.5.2"), "error").version == "1.5.2"
    # The fix names the distribution as installed.
    with pytest.raises(VersionMismatchError, match=r"pip install 'Scikit_Learn\.Fake==1\.4\.0'"):
        load_distribution_source(Source.parse("zgsklearn.mod.Thing@scikit_learn_fake_1.4.0"), "error")


def test_not_installed(env):
    env.use()
    source = Source.parse("sklearn.linear_model.Ridge@scikit_learn_1.5.2")
    assert installed_version("scikit_learn") is None or installed_version("scikit_learn") != "1.5.2"
    if installed_version("scikit_learn") is not None:
        pytest.skip("scikit-learn is installed in this environment")
    with pytest.raises(VersionMismatchError) as info:
        zgit.load_source(source)
    message = str(info.value)
    assert "1.5.2" in message and "not installed" in message
    assert "pip install 'scikit-learn==1.5.2'" in message
    # warn cannot load what is not there: still the same error
    with pytest.raises(VersionMismatchError, match="not installed"), pytest.warns(VersionMismatchWarning):
        load_distribution_source(source, "warn")


def test_warn_policy_loads_the_installed_version(env, monkeypatch):
    site = env.root / "site"
    install(site, "zg-warn", "2.0.0", package("zgwarn", "2.0.0"))
    env.use(site)
    source = Source.parse("zgwarn.mod.Thing@zg_warn_1.0.0")
    with pytest.warns(VersionMismatchWarning, match=r"1\.0\.0.*2\.0\.0.*pip install 'zg-warn==1\.0\.0'"):
        thing = load_distribution_source(source, "warn")
    assert thing.version == "2.0.0"

    # through load_source and the configuration (environment variable wins)
    monkeypatch.setenv("ZGIT_ON_VERSION_MISMATCH", "warn")
    with pytest.warns(VersionMismatchWarning):
        assert zgit.load_source(source).version == "2.0.0"
    env.forget()
    monkeypatch.setenv("ZGIT_ON_VERSION_MISMATCH", "error")
    with pytest.raises(VersionMismatchError):
        zgit.load_source(source)


def test_warn_policy_for_an_importable_module_without_metadata(env):
    plain = env.root / "plain"
    (plain / "zgplain").mkdir(parents=True)
    (plain / "zgplain" / "__init__.py").write_text(THING.format(version="0"))
    env.use(plain)
    source = Source.parse("zgplain.Thing@zg_plain_0.1")
    with pytest.raises(VersionMismatchError, match="not installed"):
        load_distribution_source(source, "error")
    with pytest.warns(VersionMismatchWarning, match="not installed"):
        assert load_distribution_source(source, "warn").version == "0"


def test_missing_module_or_attribute(env):
    site = env.root / "site"
    install(site, "zg-missing", "1.0", package("zgmissing", "1.0"))
    env.use(site)
    with pytest.raises(SourceNotFoundError, match="has no attribute 'Nope'"):
        load_distribution_source(Source.parse("zgmissing.mod.Nope@zg_missing_1.0"), "error")
    with pytest.raises(SourceNotFoundError, match="no module 'zgmissing.gone'"):
        load_distribution_source(Source.parse("zgmissing.gone.Thing@zg_missing_1.0"), "error")


def test_errors_of_the_module_itself_propagate(env):
    site = env.root / "site"
    files = {"zgbroken/__init__.py": "", "zgbroken/mod.py": "import zg_no_such_dependency\n"}
    install(site, "zg-broken", "1.0", files)
    env.use(site)
    with pytest.raises(ModuleNotFoundError, match="zg_no_such_dependency"):
        load_distribution_source(Source.parse("zgbroken.mod.Thing@zg_broken_1.0"), "error")


def test_editable_install_found_by_direct_url(env):
    project = env.root / "project" / "src"
    other = env.root / "other"
    site = env.root / "site"
    install(site, "zg-edit", "0.3.0", {"zgedit/__init__.py": "", "zgedit/mod.py": THING.format(version="e")},
            editable_dir=project)
    # a second editable distribution in the same namespace, elsewhere
    install(site, "zg-edit-plugin", "0.9.0", {"zgedit_ns/plugin/__init__.py": "", "zgedit_ns/plugin/p.py": THING.format(version="p")},
            editable_dir=other, top_level=["zgedit_ns"])
    install(site, "zg-edit-core", "0.1.0", {"zgedit_ns/core/__init__.py": "", "zgedit_ns/core/c.py": THING.format(version="c")},
            editable_dir=project, top_level=["zgedit_ns"])
    env.use(site, project, other)
    import zgedit.mod
    import zgedit_ns.core.c
    import zgedit_ns.plugin.p

    assert distribution_pin("zgedit.mod", zgedit.mod.__file__) == ("zg_edit", "0.3.0")
    assert distribution_pin("zgedit_ns.plugin.p", zgedit_ns.plugin.p.__file__) == ("zg_edit_plugin", "0.9.0")
    assert distribution_pin("zgedit_ns.core.c", zgedit_ns.core.c.__file__) == ("zg_edit_core", "0.1.0")
    assert str(zgit.resolve_source(zgedit.mod.Thing)) == "zgedit.mod.Thing@zg_edit_0.3.0"


def test_single_claimant_without_file_list_or_direct_url(env):
    site, project = env.root / "site", env.root / "develop"
    info = install(site, "zg-develop", "4.0", {}, top_level=["zgdevelop"], record=False)
    assert not (info / "RECORD").exists()
    (project / "zgdevelop").mkdir(parents=True)
    (project / "zgdevelop" / "__init__.py").write_text(THING.format(version="d"))
    env.use(site, project)
    import zgdevelop

    assert distribution_pin("zgdevelop", zgdevelop.__file__) == ("zg_develop", "4.0")


def test_a_shadowing_copy_is_not_the_distributions(env):
    site, shadow = env.root / "site", env.root / "shadow"
    install(site, "zg-shadowed", "1.0", package("zgshadowed", "1.0"))
    (shadow / "zgshadowed").mkdir(parents=True)
    (shadow / "zgshadowed" / "__init__.py").write_text("")
    (shadow / "zgshadowed" / "mod.py").write_text(THING.format(version="local"))
    env.use(shadow, site)
    import zgshadowed.mod

    assert zgshadowed.mod.VERSION == "local"
    assert distribution_pin("zgshadowed.mod", zgshadowed.mod.__file__) is None
    with pytest.warns(UnpinnedSourceWarning, match="neither in the repository nor in an installed distribution"):
        assert zgit.resolve_source(zgshadowed.mod.Thing).pin is None


def test_standard_library_is_not_a_distribution(env):
    import json as stdlib_json

    assert distribution_pin("json", stdlib_json.__file__) is None
    assert distribution_pin("json.decoder", stdlib_json.decoder.__file__) is None
    with pytest.warns(UnpinnedSourceWarning, match="standard library"):
        assert zgit.resolve_source(stdlib_json.JSONDecoder).pin is None


def test_cache_is_dropped_by_clear_caches(env):
    site = env.root / "site"
    site.mkdir()
    env.use(site)
    assert installed_version("zg-late") is None
    install(site, "zg-late", "1.0", package("zglate", "1.0"))
    dists.clear_caches()
    assert installed_version("zg-late") == "1.0"


def test_pin_version_spelling():
    assert dists.pin_version("1.0.0") == "1.0.0"
    assert dists.pin_version("1.0RC1") == "1.0rc1"
    assert dists.pin_version("v2.1") == "2.1"
    assert dists.pin_version("1.0+local_build") == "1.0+local.build"
    assert dists.pin_version(" 3.0 ") == "3.0"
    assert dists.pin_version("not a version") is None
    assert dists.pin_version(None) is None


# -- zgit's own built-ins --------------------------------------------------------------------


def _zgit_is_editable() -> bool:
    """zgit runs from this checkout and is installed as a distribution: an editable
    install, PEP 660 (dist-info + direct_url.json) or legacy (egg-link + egg-info)."""
    return Path(zgit.__file__).resolve().is_relative_to(ROOT / "zgit") and installed_version("zgit") is not None


def _can_build_wheels_offline() -> bool:
    """setuptools builds wheels itself from 70.1 on; before that it needs ``wheel``."""
    import importlib.util

    if importlib.util.find_spec("wheel") is not None:
        return True
    try:
        from setuptools.command import bdist_wheel  # noqa: F401
    except ImportError:
        return False
    return True


def test_zgit_builtins_resolve_to_the_zgit_version_editable(env, tmp_path):
    if not _zgit_is_editable():
        pytest.skip("zgit is not installed editable from this checkout")
    from zgit.steps.evaluator import Evaluator
    from zgit.steps.split import RandomSplit
    from zgit.steps.trainer import LeastSquaresTrainer

    (tmp_path / "project").mkdir()
    repo = WorkTree(tmp_path / "project")
    repo.commit("empty")
    for cls in (RandomSplit, LeastSquaresTrainer, Evaluator):
        source = zgit.resolve_source(cls, repo=repo.path)
        assert str(source) == f"{cls.__module__}.{cls.__qualname__}@zgit_{zgit.__version__}"
        assert zgit.load_source(source, repo=repo.path) is cls
    assert distribution_pin("zgit.steps.split", sys.modules["zgit.steps.split"].__file__) == ("zgit", zgit.__version__)


def test_old_zenml_pipeline_yaml(env, tmp_path):
    """A YAML written by an old ZenML loads when zenml 0.1.4 is installed, not otherwise."""
    zenml = {
        "zenml/__init__.py": "",
        "zenml/steps/__init__.py": "",
        "zenml/steps/split.py": textwrap.dedent('''\
            class RandomSplit:
                def __init__(self, split_map=None, **kwargs):
                    self.args = dict(kwargs, split_map=split_map)
                    self.split_map = split_map

                def run(self, data):
                    return data
            '''),
    }
    v014, v020 = tmp_path / "zenml-0.1.4", tmp_path / "zenml-0.2.0"
    install(v014, "zenml", "0.1.4", zenml)
    install(v020, "zenml", "0.2.0", zenml)
    (tmp_path / "project").mkdir()
    repo = WorkTree(tmp_path / "project")
    repo.write("pipelines/old.yaml", textwrap.dedent('''\
        version: '1'
        name: Old ZenML Pipeline
        steps:
          split:
            source: zenml.steps.split.RandomSplit@zenml_0.1.4
            args: {split_map: {train: 0.7, eval: 0.3}}
        '''))
    repo.commit("old pipeline")

    env.use(v014)
    pipeline = Repository(repo.path).get_pipeline_by_name("Old ZenML Pipeline")
    step = pipeline.steps["split"]
    assert type(step).__module__ == "zenml.steps.split" and step.split_map == {"train": 0.7, "eval": 0.3}
    assert Path(sys.modules["zenml.steps.split"].__file__).is_relative_to(v014)

    env.use()
    if installed_version("zenml") is None:
        with pytest.raises(VersionMismatchError) as info:
            Repository(repo.path).get_pipeline_by_name("Old ZenML Pipeline")
        assert "zenml 0.1.4" in str(info.value) and "not installed" in str(info.value)
        assert "pip install 'zenml==0.1.4'" in str(info.value)

    env.use(v020)
    with pytest.raises(VersionMismatchError) as info:
        Repository(repo.path).get_pipeline_by_name("Old ZenML Pipeline")
    assert "0.1.4" in str(info.value) and "zenml 0.2.0 is installed" in str(info.value)
    assert "pip install 'zenml==0.1.4'" in str(info.value)


def _copy_project(dest: Path) -> Path:
    dest.mkdir()
    for name in ("setup.py", "setup.cfg", "README.md", "MANIFEST.in", "pyproject.toml"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, dest / name)
    if not (dest / "README.md").exists():
        (dest / "README.md").write_text("zgit\n")
    shutil.copytree(ROOT / "zgit", dest / "zgit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


@pytest.mark.slow
def test_zgit_builtins_resolve_to_the_zgit_version_regular_install(tmp_path):
    """``pip install --target`` (a regular, non-editable install) in another process."""
    project = _copy_project(tmp_path / "src")
    target = tmp_path / "target"
    started = time.monotonic()
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target)]
    if _can_build_wheels_offline():
        command += ["--no-build-isolation", "--no-index"]
    # else pip fetches setuptools and wheel into an isolated build environment
    result = subprocess.run(command + [str(project)], capture_output=True, text=True)
    if result.returncode != 0 and "--no-index" not in command and (
        "Could not find a version" in result.stderr or "NewConnectionError" in result.stderr
    ):
        pytest.skip("cannot build a wheel: no 'wheel' here and the package index is unreachable")
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(target.glob("zgit-*.dist-info/RECORD"))
    script = textwrap.dedent('''\
        import json, sys, warnings
        warnings.simplefilter("error")
        import zgit
        from zgit.distributions import distribution_pin
        from zgit.steps.split import RandomSplit
        from zgit.steps.trainer import LeastSquaresTrainer
        out = {
            "file": zgit.__file__,
            "pin": distribution_pin("zgit.steps.split", sys.modules["zgit.steps.split"].__file__),
            "sources": [str(zgit.resolve_source(c)) for c in (RandomSplit, LeastSquaresTrainer)],
            "loaded": zgit.load_source(zgit.resolve_source(RandomSplit)) is RandomSplit,
        }
        print(json.dumps(out))
        ''')
    env = dict(os.environ, PYTHONPATH=str(target), PYTHONDONTWRITEBYTECODE="1")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(out["file"]).resolve().is_relative_to(target.resolve())
    assert out["pin"] == ["zgit", zgit.__version__]
    assert out["sources"] == [
        f"zgit.steps.split.RandomSplit@zgit_{zgit.__version__}",
        f"zgit.steps.trainer.LeastSquaresTrainer@zgit_{zgit.__version__}",
    ]
    assert out["loaded"] is True
    assert time.monotonic() - started < 120
