"""Code bundles (issue 13): built from git objects, verified with hashlib, installed without
a repository.  git (the CLI) is the oracle for what the module directory holds."""

from __future__ import annotations

import dataclasses
import importlib
import os
import subprocess
import sys

import pytest

from zgit import BundleError, Repository, ZgitError
from zgit.engines import bundle as bundles
from zgit.engines.bundle import Bundle, BundleFile, build, build_for_source, install, verify, verify_bytes
from zgit.source import Source

STEP = '''\
from zgit import BaseStep
from .helpers.tools import double


class Scale(BaseStep):
    def __init__(self, factor=2):
        self.factor = factor

    def run(self, data):
        return [double(x) * self.factor + {bump} for x in data]
'''


def make_project(repo, bump=0):
    repo.write(".gitignore", "__pycache__/\n*.pyc\n")
    repo.write("steps/__init__.py", "RAISE = 1 / 0  # never executed on a worker\n")
    repo.write("steps/scale/__init__.py", "")
    repo.write("steps/scale/step.py", STEP.format(bump=bump))
    repo.write("steps/scale/helpers/__init__.py", "")
    repo.write("steps/scale/helpers/tools.py", "def double(x):\n    return 2 * x\n")
    repo.write("steps/scale/run.sh", "#!/bin/sh\necho hi\n", mode=0o755)
    repo.write("steps/scale/data.txt", "data\n")
    repo.write("steps/other/mod.py", "X = 1\n")
    if not (repo.path / "steps/scale/link.txt").is_symlink():
        os.symlink("data.txt", repo.path / "steps/scale/link.txt")
    if not (repo.path / ".zgit").exists():
        Repository.init(repo.path)
    return repo.commit(f"bump {bump}")


@pytest.fixture
def project(repo):
    repo.first = make_project(repo, 0)
    repo.second = make_project(repo, 100)
    return repo


def _bundle(project, sha=None):
    return build_for_source(Repository.coerce(project.path), Source.parse(f"steps.scale.step.Scale@{sha or project.first}"))


def test_bundle_holds_the_module_directory_at_the_pin_as_git_lists_it(project):
    bundle = _bundle(project)
    listed = project.git("ls-tree", "-r", project.first, "steps/scale").splitlines()
    expected = sorted((line.split("\t")[1][len("steps/scale/"):], int(line.split()[0], 8), line.split()[2])
                      for line in listed)
    assert sorted((f.path, f.mode, f.oid) for f in bundle.files) == expected
    for item in bundle.files:
        assert item.data == subprocess.run(["git", "cat-file", "blob", item.oid], cwd=project.path,
                                           capture_output=True, check=True).stdout
    assert bundle.key == f"steps.scale@{project.first}"
    assert bundle.module_dir == "steps/scale" and len(bundle.trees) == 3
    assert bundle.commit == subprocess.run(["git", "cat-file", "commit", project.first], cwd=project.path,
                                           capture_output=True, check=True).stdout
    assert verify(bundle) is bundle


def test_same_pin_gives_byte_identical_bundles_from_objects_not_the_work_tree(project):
    before = project.snapshot()
    first = _bundle(project).to_bytes()
    project.write("steps/scale/step.py", "broken = (\n")  # the work tree is not read
    project.write("steps/scale/extra.py", "X = 1\n")
    again = build_for_source(Repository.coerce(project.path),
                             Source.parse(f"steps.scale.step.Scale@{project.first}")).to_bytes()
    assert again == first
    assert Bundle.from_bytes(first).to_bytes() == first
    assert verify_bytes(first).key == f"steps.scale@{project.first}"
    assert _bundle(project, project.second).to_bytes() != first
    project.git("checkout", "--", "steps/scale/step.py")
    project.remove("steps/scale/extra.py")
    assert project.snapshot() == before and project.status() == ""


def _replace_file(bundle, which, **changes):
    files = tuple(dataclasses.replace(f, **changes) if f.path == which else f for f in bundle.files)
    return dataclasses.replace(bundle, files=files)


def _blob_id(data):
    import hashlib

    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


TAMPERINGS = {
    "file bytes": lambda b: _replace_file(b, "step.py", data=b"print('evil')\n"),
    "file bytes with matching blob id": lambda b: _replace_file(
        b, "step.py", data=b"print('evil')\n", oid=_blob_id(b"print('evil')\n")),
    "extra file": lambda b: dataclasses.replace(b, files=b.files + (
        BundleFile("evil.py", 0o100644, _blob_id(b"X = 1\n"), b"X = 1\n"),)),
    "missing file": lambda b: dataclasses.replace(b, files=tuple(f for f in b.files if f.path != "step.py")),
    "mode changed": lambda b: _replace_file(b, "run.sh", mode=0o100644),
    "renamed file": lambda b: _replace_file(b, "data.txt", path="data2.txt"),
    "file listed twice": lambda b: dataclasses.replace(b, files=b.files + b.files[:1]),
    "path escapes": lambda b: _replace_file(b, "data.txt", path="../data.txt"),
    "commit": lambda b: dataclasses.replace(b, commit=b.commit.replace(b"bump 0", b"bump 9")),
    "root tree": lambda b: dataclasses.replace(b, trees=(b.trees[0] + b"x",) + b.trees[1:]),
    "module tree": lambda b: dataclasses.replace(b, trees=b.trees[:-1] + (b.trees[-1][:-1] + b"\0",)),
    "proof shortened": lambda b: dataclasses.replace(b, trees=b.trees[:-1]),
    "key": lambda b: dataclasses.replace(b, key="steps.other@" + b.sha),
    "sha": lambda b: dataclasses.replace(b, sha="0" * 40, key="steps.scale@" + "0" * 40),
    "package": lambda b: dataclasses.replace(b, package="steps.other", key="steps.other@" + b.sha,
                                             module_dir="steps/other"),
}


@pytest.mark.parametrize("case", sorted(TAMPERINGS))
def test_every_tampering_is_a_bundle_error_naming_the_pin(project, case):
    bundle = _bundle(project)
    tampered = TAMPERINGS[case](bundle)
    with pytest.raises(BundleError) as caught:
        verify(tampered)
    assert isinstance(caught.value, ZgitError)
    assert tampered.key in str(caught.value)  # the pin it claims
    with pytest.raises(BundleError):
        verify_bytes(tampered.to_bytes())
    with pytest.raises(BundleError):
        install(tampered)
    assert not bundles.installed(tampered.key)


def test_a_commit_of_another_pin_with_its_own_proof_is_rejected_under_this_key(project):
    first, second = _bundle(project), _bundle(project, project.second)
    mixed = dataclasses.replace(first, commit=second.commit, trees=second.trees)
    with pytest.raises(BundleError, match=project.first):
        verify(mixed)


@pytest.mark.parametrize("damage", ["truncated", "appended", "no magic", "bad manifest"])
def test_damaged_bytes_are_a_bundle_error(project, damage):
    data = _bundle(project).to_bytes()
    damaged = {
        "truncated": data[:-5],
        "appended": data + b"x",
        "no magic": b"zip" + data,
        "bad manifest": data.replace(b'"files":', b'"filez":', 1),
    }[damage]
    with pytest.raises(BundleError):
        verify_bytes(damaged)


def test_missing_module_directory_is_a_bundle_error(project):
    git = Repository.coerce(project.path).git
    with pytest.raises(BundleError, match="steps/nowhere"):
        build(git, project.first, "steps/nowhere", "steps.nowhere")


@pytest.fixture
def no_steps_package(monkeypatch):
    """No ``steps`` package imported, before and after (install() creates one: an empty
    namespace package that later tests must not find)."""
    for name in [n for n in sys.modules if n == "steps" or n.startswith("steps.")]:
        monkeypatch.delitem(sys.modules, name)
    yield
    for name in [n for n in sys.modules if n == "steps" or n.startswith("steps.")]:
        del sys.modules[name]


def test_installed_bundle_imports_from_its_bytes_outside_any_repository(project, tmp_path, monkeypatch,
                                                                        no_steps_package):
    import zgit.loader

    data = _bundle(project).to_bytes()
    zgit.loader.forget_loaded()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(ImportError):
        importlib.import_module("steps.scale")
    assert install(data) is True
    assert install(data) is False  # already installed: a no-op
    module = importlib.import_module(f"steps.scale@{project.first}.step")
    assert module.Scale(factor=3).run([1, 2]) == [6, 12]
    assert module.Scale.__zgit_source__ == f"steps.scale.step.Scale@{project.first}"
    assert module.__file__.startswith(bundles.BUNDLE_ROOT)
    # the package above the module directory is an empty namespace: its __init__ never ran
    assert sys.modules["steps"].__path__ == [] and not hasattr(sys.modules["steps"], "RAISE")
    with pytest.raises(ImportError):
        importlib.import_module("steps.scale")


def test_unverified_bundle_is_never_installed(project, no_steps_package):
    import zgit.loader

    zgit.loader.forget_loaded()
    bad = _replace_file(_bundle(project), "step.py", data=b"X = 1\n")
    with pytest.raises(BundleError, match=project.first):
        install(bad.to_bytes())
    assert not bundles.installed(bad.key)
