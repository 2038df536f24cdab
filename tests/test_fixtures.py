"""The fixture-repository builder, checked against the git CLI."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures import specs
from fixtures.builder import EMAIL, NAME, FixtureError, build_repo, filler_paths, named_spec
from tests.conftest import ROOT, git, snapshot, status

SMALL = {
    "commits": [
        {"message": "first", "files": {"a.txt": "a\n", "d/b.py": "B = 1\n", "d/e/c.bin": b"\x00\x01\r\n"}},
        {"message": "second", "files": {"a.txt": "a2\n", "d/e/c.bin": None}, "modes": {"d/b.py": 0o755}},
        {"message": "third", "symlinks": {"link": "d/b.py"}},
    ]
}


def tree(repo, rev="HEAD"):
    """path -> (mode, blob sha) of ``rev``, as git lists it."""
    out = {}
    for line in git(repo, "ls-tree", "-r", "-z", "--full-tree", rev).split("\0"):
        if line:
            meta, path = line.split("\t", 1)
            mode, _kind, sha = meta.split()
            out[path] = (mode, sha)
    return out


def show(repo, rev, path) -> bytes:
    return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True, check=True).stdout


def test_same_spec_twice_gives_the_same_shas(tmp_path):
    first = build_repo(tmp_path / "one", specs.trainer_history(5))
    second = build_repo(tmp_path / "two", specs.trainer_history(5))
    assert first["shas"] == second["shas"]
    assert len(set(first["shas"])) == 5
    assert first["head"] == first["shas"][-1]
    assert git(tmp_path / "one", "rev-list", "--reverse", "HEAD").split() == first["shas"]


def test_small_spec_has_a_known_head(tmp_path):
    info = build_repo(tmp_path / "r", SMALL)
    assert info["head"] == "7c5c8e3a14be2506652890b7feb41c24d1409453", (
        "the SHAs of a spec must not depend on the machine; if the builder's format changed "
        "on purpose, update this SHA"
    )


def test_user_and_system_configuration_are_ignored(tmp_path, monkeypatch):
    expected = build_repo(tmp_path / "plain", SMALL)["shas"]
    home = tmp_path / "home"
    home.mkdir()
    hostile = (
        "[user]\n\tname = Someone Else\n\temail = else@example.com\n"
        "[init]\n\tdefaultBranch = trunk\n"
        "[commit]\n\tgpgsign = true\n"
        "[core]\n\tautocrlf = true\n\tfileMode = false\n"
    )
    (home / ".gitconfig").write_text(hostile)
    (home / "global").write_text(hostile)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / "global"))
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Someone Else")
    monkeypatch.setenv("GIT_COMMITTER_DATE", "2030-01-01T00:00:00Z")
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "plain" / ".git"))  # must not leak in
    info = build_repo(tmp_path / "hostile", SMALL)
    assert info["shas"] == expected
    assert (tmp_path / "hostile" / "d" / "e").exists() is False
    monkeypatch.delenv("GIT_DIR")
    assert git(tmp_path / "hostile", "symbolic-ref", "HEAD").strip() == "refs/heads/main"


def test_history_identity_dates_and_clean_work_tree(tmp_path):
    repo = tmp_path / "r"
    info = build_repo(repo, SMALL)
    log = git(repo, "log", "--reverse", "--format=%H|%an|%ae|%cn|%ce|%aI|%cI|%s").splitlines()
    assert [line.split("|")[0] for line in log] == info["shas"]
    for i, line in enumerate(log):
        _sha, an, ae, cn, ce, ad, cd, subject = line.split("|")
        assert (an, ae, cn, ce) == (NAME, EMAIL, NAME, EMAIL)
        assert ad == cd == f"2024-01-01T00:{i:02d}:00+00:00"
        assert subject == SMALL["commits"][i]["message"]
    assert git(repo, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert status(repo) == ""
    git(repo, "fsck", "--strict", "--no-progress")
    assert not (repo / ".git" / "fixture-marks").exists()


def test_each_commit_holds_exactly_its_files(tmp_path):
    repo = tmp_path / "r"
    shas = build_repo(repo, SMALL)["shas"]
    assert set(tree(repo, shas[0])) == {"a.txt", "d/b.py", "d/e/c.bin"}
    assert show(repo, shas[0], "d/e/c.bin") == b"\x00\x01\r\n"  # bytes kept exactly, no CRLF games
    assert tree(repo, shas[0])["d/b.py"][0] == "100644"
    second = tree(repo, shas[1])
    assert set(second) == {"a.txt", "d/b.py"}
    assert second["d/b.py"][0] == "100755"
    assert show(repo, shas[1], "a.txt") == b"a2\n"
    third = tree(repo, shas[2])
    assert third["link"][0] == "120000"
    assert show(repo, shas[2], "link") == b"d/b.py"


def test_work_tree_is_the_last_commit(tmp_path):
    repo = tmp_path / "r"
    build_repo(repo, SMALL)
    snap = snapshot(repo)
    assert set(snap) == {"a.txt", "d/b.py", "link"}
    assert snap["a.txt"][0] == b"a2\n"
    assert snap["d/b.py"][1] & stat.S_IXUSR
    assert stat.S_ISLNK(snap["link"][1]) and snap["link"][0] == b"d/b.py"
    assert not (repo / "d" / "e").exists()


def test_deleting_a_directory_and_replacing_files_with_directories(tmp_path):
    spec = {"commits": [
        {"files": {"pkg/a.py": "a", "pkg/sub/b.py": "b", "x": "file", "keep.txt": "k"}},
        {"files": {"pkg": None, "x/inside.py": "now a directory"}},
        {"files": {"x": "a file again", "pkg/new.py": "n"}},
    ]}
    repo = tmp_path / "r"
    shas = build_repo(repo, spec)["shas"]
    assert set(tree(repo, shas[1])) == {"keep.txt", "x/inside.py"}
    assert set(tree(repo, shas[2])) == {"keep.txt", "x", "pkg/new.py"}
    assert set(snapshot(repo)) == {"keep.txt", "x", "pkg/new.py"}
    assert status(repo) == ""


def test_modes_persist_until_changed(tmp_path):
    spec = {"commits": [
        {"files": {"run.sh": "#!/bin/sh\n"}, "modes": {"run.sh": 0o755}},
        {"files": {"run.sh": "#!/bin/sh\necho hi\n"}},  # new content keeps the mode
        {"modes": {"run.sh": 0o644}},
        {"files": {"run.sh": None}, "symlinks": {"run.sh": "elsewhere"}},  # file -> symlink
        {"files": {"run.sh": "back\n"}},  # symlink -> regular file
    ]}
    repo = tmp_path / "r"
    shas = build_repo(repo, spec)["shas"]
    modes = [tree(repo, sha)["run.sh"][0] for sha in shas]
    assert modes == ["100755", "100755", "100644", "120000", "100644"]
    assert tree(repo, shas[1])["run.sh"][1] != tree(repo, shas[0])["run.sh"][1]
    assert tree(repo, shas[2])["run.sh"][1] == tree(repo, shas[1])["run.sh"][1]
    assert not os.path.islink(repo / "run.sh")


def test_filler_files_are_nested_and_in_the_first_commit(tmp_path):
    spec = {"filler": {"count": 1234, "dir": "data/filler"},
            "commits": [{"files": {"m.py": "M = 1\n"}}, {"files": {"m.py": "M = 2\n"}}]}
    repo = tmp_path / "r"
    shas = build_repo(repo, spec)["shas"]
    files = git(repo, "ls-files").splitlines()
    filler = [f for f in files if f.startswith("data/filler/")]
    assert len(filler) == 1234 and len(files) == 1235
    assert len(git(repo, "ls-tree", "-r", "--name-only", shas[0]).splitlines()) == 1235
    assert git(repo, "diff", "--name-only", shas[0], shas[1]).split() == ["m.py"]
    by_dir = {}
    for f in filler:
        by_dir.setdefault(f.rsplit("/", 1)[0], []).append(f)
    assert max(len(v) for v in by_dir.values()) == 100
    assert all(f.count("/") == 4 for f in filler)  # data/filler/<top>/<mid>/<file>
    first, content = next(iter(filler_paths(1, "data/filler")))
    assert (repo / first).read_bytes() == content
    assert status(repo) == ""


def test_filler_alone_makes_one_commit(tmp_path):
    info = build_repo(tmp_path / "r", {"filler": {"count": 10}})
    assert len(info["shas"]) == 1
    assert len(git(tmp_path / "r", "ls-files").splitlines()) == 10


def test_paths_that_need_quoting(tmp_path):
    spec = {"commits": [{"files": {'"quoted" name.txt': "q", "with space/é.py": "e", "back\\slash": "no"}}]}
    with pytest.raises(FixtureError):
        build_repo(tmp_path / "bad", spec)
    del spec["commits"][0]["files"]["back\\slash"]
    build_repo(tmp_path / "r", spec)
    assert set(snapshot(tmp_path / "r")) == {'"quoted" name.txt', "with space/é.py"}
    assert status(tmp_path / "r") == ""


@pytest.mark.parametrize("spec, words", [
    ({"commits": []}, "no commits"),
    ({"commits": [{"files": {"/abs": "x"}}]}, "relative"),
    ({"commits": [{"files": {"a/../b": "x"}}]}, "'..'"),
    ({"commits": [{"files": {".git/config": "x"}}]}, ".git"),
    ({"commits": [{"files": {"a": 1}}]}, "str, bytes or None"),
    ({"commits": [{"files": {"missing": None}}]}, "no such file"),
    ({"commits": [{"modes": {"missing": 0o755}}]}, "no regular file"),
    ({"commits": [{"file": {}}]}, "unknown keys"),
    ({"commits": [{}], "branches": []}, "unknown keys"),
    ({"filler": {"count": -1}}, "non-negative"),
    ({"commits": [{"files": {"a": "x"}, "symlinks": {"a": "b"}}]}, "both a file and a symlink"),
])
def test_malformed_specs_are_refused_before_anything_is_written(tmp_path, spec, words):
    with pytest.raises(FixtureError, match=None) as info:
        build_repo(tmp_path / "r", spec)
    assert words in str(info.value)
    assert not (tmp_path / "r").exists()


def test_destination_must_be_empty(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "something").write_text("")
    with pytest.raises(FixtureError, match="not an empty directory"):
        build_repo(tmp_path / "r", SMALL)
    (tmp_path / "empty").mkdir()
    build_repo(tmp_path / "empty", SMALL)


def test_trainer_history_versions(tmp_path):
    repo = tmp_path / "r"
    shas = build_repo(repo, specs.trainer_history(4))["shas"]
    step = "trainers/my_awesome_trainer/my_trainer_step.py"
    for i, sha in enumerate(shas):
        assert f"VERSION = {i}\n".encode() in show(repo, sha, step)
        assert show(repo, sha, "trainers/my_awesome_trainer/helper.py") == f"HELPER_VERSION = {i}\n".encode()
    assert git(repo, "diff", "--name-only", shas[1], shas[2]).split() == [
        "trainers/my_awesome_trainer/helper.py", step]
    sys.path.insert(0, str(repo))  # undone by the autouse fixture, as is the import
    from trainers.my_awesome_trainer.my_trainer_step import MyAwesomeTrainer

    assert MyAwesomeTrainer.VERSION == 3
    assert MyAwesomeTrainer().version() == 3
    assert MyAwesomeTrainer().helper_version() == 3
    assert specs.TRAINER_SOURCE == f"{MyAwesomeTrainer.__module__}.{MyAwesomeTrainer.__qualname__}"


def test_trainer_history_as_a_step(tmp_path):
    repo = tmp_path / "r"
    build_repo(repo, specs.trainer_history(1, step=1))
    text = (repo / "trainers/my_awesome_trainer/my_trainer_step.py").read_text()
    assert "from zgit import BaseStep" in text and "class MyAwesomeTrainer(BaseStep):" in text


def test_big_repo(tmp_path):
    repo = tmp_path / "r"
    shas = build_repo(repo, specs.big_repo(250, n_commits=2))["shas"]
    files = git(repo, "ls-files").splitlines()
    assert len([f for f in files if f.startswith("filler/")]) == 250
    module = sorted(f for f in files if f.startswith("pkg/mod/"))
    assert len(module) == 10
    assert {"pkg/mod/__init__.py", "pkg/mod/step.py", "pkg/mod/part_1.py", "pkg/__init__.py"} <= set(files)
    assert git(repo, "diff", "--name-only", shas[0], shas[1]).split() == ["pkg/mod/step.py"]
    assert "VERSION = 1" in (repo / "pkg/mod/step.py").read_text()


def test_named_specs():
    assert named_spec("trainer_history:3") == specs.trainer_history(3)
    assert named_spec("big_repo:1_000,5") == specs.big_repo(1000, 5)
    with pytest.raises(FixtureError, match="no spec named"):
        named_spec("nope:1")
    with pytest.raises(FixtureError, match="integers"):
        named_spec("trainer_history:x")


def test_command_line(tmp_path):
    dest = tmp_path / "cli"
    result = subprocess.run(
        [sys.executable, "-m", "fixtures.builder", "--spec", "trainer_history:3", str(dest)],
        cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = json.loads(result.stdout)
    assert out["shas"] == build_repo(tmp_path / "api", specs.trainer_history(3))["shas"]
    again = subprocess.run(
        [sys.executable, "-m", "fixtures.builder", "--spec", "trainer_history:3", str(dest)],
        cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )
    assert again.returncode == 2 and "not an empty directory" in again.stderr


def test_make_repo_fixture(make_repo):
    assert make_repo.status() == ""
    make_repo.write("pkg/a.py", "A = 1\n")
    assert make_repo.status() == "?? pkg/a.py\n"
    first = make_repo.commit("add a")
    assert make_repo.status() == "" and make_repo.head() == first
    make_repo.write("pkg/a.py", "A = 2\n")
    assert make_repo.status() == " M pkg/a.py\n"
    assert make_repo.snapshot()["pkg/a.py"][0] == b"A = 2\n"
    assert make_repo.commit("change a") != first
    assert git(make_repo, "log", "--format=%an <%ae>", "-1").strip() == "zgit tests <tests@zgit.invalid>"


def test_fixture_repo_fixture(fixture_repo):
    repo = fixture_repo("trainer_history:2")
    assert len(repo.shas) == 2 and repo.head() == repo.head_sha
    assert repo.status() == ""
    other = fixture_repo({"commits": [{"files": {"x": "y"}}]}, name="other")
    assert other.snapshot() == {"x": (b"y", other.snapshot()["x"][1])}


def test_git_runs_without_any_configuration(tmp_path):
    # The autouse fixture points git at no configuration and gives it an identity,
    # as on a CI machine where nobody ran `git config --global user.name`.
    assert os.environ["GIT_CONFIG_GLOBAL"] == os.devnull
    assert os.environ["GIT_CONFIG_NOSYSTEM"] == "1"
    repo = tmp_path / "bare-identity"
    repo.mkdir()
    env = {k: v for k, v in os.environ.items()}
    env["HOME"] = str(tmp_path)  # no ~/.gitconfig
    subprocess.run(["git", "init", "-q"], cwd=repo, env=env, check=True)
    (repo / "f").write_text("x")
    subprocess.run(["git", "add", "f"], cwd=repo, env=env, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "m"], cwd=repo, env=env, check=True)


def test_same_shas_as_git_add_and_commit(tmp_path):
    """The oracle: the same history made with `git add -A` + `git commit` has the same SHAs."""
    shas = build_repo(tmp_path / "built", SMALL)["shas"]
    repo = tmp_path / "by-hand"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "d" / "e").mkdir(parents=True)
    (repo / "a.txt").write_bytes(b"a\n")
    (repo / "d" / "b.py").write_bytes(b"B = 1\n")
    (repo / "d" / "e" / "c.bin").write_bytes(b"\x00\x01\r\n")
    steps = [
        lambda: None,
        lambda: ((repo / "a.txt").write_bytes(b"a2\n"), (repo / "d/e/c.bin").unlink(),
                 (repo / "d/b.py").chmod(0o755)),
        lambda: os.symlink("d/b.py", repo / "link"),
    ]
    by_hand = []
    for i, step in enumerate(steps):
        step()
        date = f"2024-01-01T00:{i:02d}:00Z"
        who = {"GIT_AUTHOR_NAME": NAME, "GIT_AUTHOR_EMAIL": EMAIL, "GIT_COMMITTER_NAME": NAME,
               "GIT_COMMITTER_EMAIL": EMAIL, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", SMALL["commits"][i]["message"], **who)
        by_hand.append(git(repo, "rev-parse", "HEAD").strip())
    assert by_hand == shas
