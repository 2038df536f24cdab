"""resolve_source on real repositories: the clean check decides between a pin and a warning."""

import subprocess
import sys
import textwrap
import warnings

import pytest

from zgit import Repository, Source, SourceError, UnpinnedSourceWarning, resolve_source
from tests._project import SOURCE, build_history, write_version


def _import_trainer(repo):
    sys.path.insert(0, str(repo.path))
    from trainers.my_awesome_trainer.my_trainer_step import MyAwesomeTrainer

    return MyAwesomeTrainer


def _resolve_unpinned(obj, **kwargs):
    with pytest.warns(UnpinnedSourceWarning) as record:
        source = resolve_source(obj, **kwargs)
    assert source.kind == "unpinned"
    return source, str(record[0].message)


def test_clean_module_directory_is_pinned_at_head(repo):
    shas = build_history(repo, 2)
    cls = _import_trainer(repo)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        source = resolve_source(cls)
    assert source == Source.parse(f"{SOURCE}@{shas[-1]}")
    assert resolve_source(SOURCE) == source  # a dotted string works too
    assert resolve_source(cls, repo=repo.path) == source
    assert resolve_source(cls, repo=Repository(repo.path / "trainers")) == source


@pytest.mark.parametrize("dirt, named", [
    (lambda r: r.write("trainers/my_awesome_trainer/new.py", "x = 1\n"), ["new.py"]),
    (lambda r: r.write("trainers/my_awesome_trainer/helper.py", "HELPER_VERSION = 9\n"), ["helper.py"]),
    (lambda r: (r.write("trainers/my_awesome_trainer/helper.py", "HELPER_VERSION = 9\n"),
                r.git("add", "-A")), ["helper.py"]),
    (lambda r: r.remove("trainers/my_awesome_trainer/helper.py"), ["helper.py"]),
    (lambda r: r.git("mv", "trainers/my_awesome_trainer/helper.py", "trainers/my_awesome_trainer/h2.py"),
     ["helper.py", "h2.py"]),
    (lambda r: (r.path / "trainers/my_awesome_trainer/helper.py").chmod(0o755), ["helper.py"]),
    (lambda r: r.write("trainers/my_awesome_trainer/data/deep/x.csv", "1,2\n"), ["data/deep/x.csv"]),
], ids=["untracked", "modified", "staged", "deleted", "renamed", "mode", "nested-untracked"])
def test_dirty_module_directory_warns_and_names_files(repo, dirt, named):
    build_history(repo, 1)
    cls = _import_trainer(repo)
    dirt(repo)
    source, message = _resolve_unpinned(cls)
    assert source == Source.parse(SOURCE)
    for name in named:
        assert f"trainers/my_awesome_trainer/{name}" in message
    assert "commit" in message


def test_ignored_files_bytecode_and_outside_dirt_do_not_count(repo):
    repo.write(".gitignore", "*.log\nbig_data/\n")
    shas = build_history(repo, 1)
    cls = _import_trainer(repo)  # writes __pycache__ inside the module directory
    repo.write("trainers/my_awesome_trainer/run.log", "ignored\n")
    repo.write("trainers/my_awesome_trainer/big_data/a.bin", "ignored\n")
    repo.write("trainers/my_awesome_trainer/__pycache__/stale.cpython-311.pyc", "junk")
    repo.write("trainers/my_awesome_trainer/orphan.pyc", "junk")
    repo.write("trainers/other.py", "dirt outside the module directory\n")
    repo.write("README.md", "untracked outside\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_source(cls).sha == shas[0]


def test_no_commit_yet(repo):
    write_version(repo, 0)
    cls = _import_trainer(repo)
    _, message = _resolve_unpinned(cls)
    assert "no commit" in message


def test_module_file_in_source_root_is_never_pinned(repo):
    repo.write("toplevel.py", "class Top:\n    pass\n")
    repo.commit()
    sys.path.insert(0, str(repo.path))
    import toplevel

    source, message = _resolve_unpinned(toplevel.Top)
    assert source == Source.parse("toplevel.Top")
    assert "package directory" in message


def test_outside_any_repository_and_stdlib(repo, tmp_path, monkeypatch):
    import collections

    _, message = _resolve_unpinned(collections.OrderedDict)
    assert "standard library" in message
    outside = tmp_path / "elsewhere"
    (outside / "lib").mkdir(parents=True)
    (outside / "lib" / "__init__.py").write_text("")
    (outside / "lib" / "thing.py").write_text("class Thing:\n    pass\n")
    sys.path.insert(0, str(outside))
    from lib.thing import Thing

    _, message = _resolve_unpinned(Thing)
    assert "neither in the repository nor in an installed distribution" in message
    monkeypatch.chdir(outside)  # not a repository at all
    _resolve_unpinned(Thing)


def test_nested_and_local_classes_are_refused(repo):
    class Local:
        pass

    with pytest.raises(SourceError, match="top level"):
        resolve_source(Local)


def test_source_root_from_config(repo):
    repo.write(".zgit/config.yaml", "source_root: src\n")
    repo.write("src/pkg/__init__.py", "")
    repo.write("src/pkg/mod.py", "class Cls:\n    pass\n")
    sha = repo.commit()
    sys.path.insert(0, str(repo.path / "src"))
    from pkg.mod import Cls

    assert resolve_source(Cls) == Source("pkg.mod", "Cls", sha)


def test_class_defined_in_a_script_run_as_main(repo):
    repo.write("jobs/__init__.py", "")
    repo.write("jobs/train.py", textwrap.dedent("""\
        import zgit

        class ScriptStep(zgit.BaseStep):
            pass

        if __name__ == "__main__":
            print(zgit.resolve_source(ScriptStep))
        """))
    sha = repo.commit()
    out = subprocess.run([sys.executable, "jobs/train.py"], cwd=repo.path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"jobs.train.ScriptStep@{sha}"


def test_clean_check_reads_only_the_module_directory(repo):
    build_history(repo, 1)
    git = Repository(repo.path).git
    # Thousands of untracked files elsewhere do not change the answer (nor get read).
    for i in range(300):
        repo.write(f"elsewhere/f{i}.txt", "x")
    assert git.dirty_paths("trainers/my_awesome_trainer") == []
    repo.write("trainers/my_awesome_trainer/x.py", "")
    assert git.dirty_paths("trainers/my_awesome_trainer") == ["trainers/my_awesome_trainer/x.py"]


def test_resolve_waits_for_another_process_checkout(repo):
    """A pin check during another process's checkout sees HEAD, not the pinned files."""
    import time

    shas = build_history(repo, 2)
    cls = _import_trainer(repo)
    repo.write("trainers/my_awesome_trainer/slow.py", "import time\nopen('started', 'w').close()\ntime.sleep(2)\nclass S: pass\n")
    pin = repo.commit()
    repo.remove("trainers/my_awesome_trainer/slow.py")
    head = repo.commit()
    loader = subprocess.Popen([sys.executable, "-c", f"import zgit; zgit.load_source('trainers.my_awesome_trainer.slow.S@{pin}')"],
                              cwd=repo.path)
    try:
        deadline = time.time() + 30
        while not (repo.path / "started").exists():
            assert loader.poll() is None and time.time() < deadline
            time.sleep(0.01)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert resolve_source(cls).sha == head
    finally:
        assert loader.wait(timeout=60) == 0
    (repo.path / "started").unlink()
    assert repo.status() == ""
