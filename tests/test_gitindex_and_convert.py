"""zgit's reading of git's index (v2, v3, v4) and its clean-direction conversions,
checked against git itself (``git ls-files --debug -s``, ``git hash-object --path``)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Dict

import pygit2
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.conftest import WorkTree, git_env
from zgit.convert import Crlf, crlf_action, crlf_to_git, ident_to_git, indexed_text_has_crlf, looks_binary, to_utf8
from zgit.gitindex import GitIndex, IndexFormatError, read_index


def run_git(repo, *args: str, input: bytes = None) -> bytes:
    result = subprocess.run(["git", *args], cwd=os.fspath(getattr(repo, "path", repo)), env=git_env(),
                            input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert result.returncode == 0, result.stderr
    return result.stdout


def ls_files_debug(repo) -> Dict[str, dict]:
    """``git ls-files -s --debug``: path -> mode, oid, stage and stat fields."""
    out = run_git(repo, "ls-files", "-s", "--debug", "-z").decode()
    entries: Dict[str, dict] = {}
    current = None
    for line in out.replace("\0", "\n").splitlines():
        if not line.startswith(" "):
            meta, path = line.split("\t", 1)
            mode, oid, stage = meta.split()
            current = entries[path] = {"mode": int(mode, 8), "oid": oid, "stage": int(stage)}
            continue
        for key, value in _debug_fields(line.strip()):
            current[key] = value
    return entries


def _debug_fields(line: str):
    # "ctime: 1796223008:826687318", "dev: 65024\tino: 2146393", "size: 3\tflags: 0"
    for key, value in re.findall(r"(\w+): (\S+)", line):
        if key in ("ctime", "mtime"):
            yield key, int(value.split(":")[0])
        else:
            yield key, int(value, 16) if key == "flags" else int(value)


names = st.text(alphabet="abcdefgh_-.é", min_size=1, max_size=12).filter(lambda n: n not in (".", "..") and not n.startswith(".git"))
paths = st.lists(names, min_size=1, max_size=4).map("/".join)


@pytest.fixture(scope="module")
def index_repo(tmp_path_factory):
    return WorkTree(tmp_path_factory.mktemp("index") / "repo")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.dictionaries(paths, st.binary(max_size=40), min_size=1, max_size=12),
       version=st.sampled_from([2, 3, 4]), long_name=st.booleans(), flagged=st.booleans())
def test_index_parse_matches_git(index_repo, files, version, long_name, flagged):
    repo = index_repo
    index_file = repo.path / ".git" / "index"
    if index_file.exists():
        index_file.unlink()
    for child in repo.path.iterdir():
        if child.name != ".git":
            subprocess.run(["rm", "-rf", str(child)], check=True)
    if long_name:
        files = dict(files, **{"long/" + "x" * 4200: b"long"})
    written = {}
    for path, data in files.items():
        full = repo.path / path
        try:
            full.parent.mkdir(parents=True, exist_ok=True)
            full.write_bytes(data)
        except (FileExistsError, NotADirectoryError, IsADirectoryError, OSError):
            continue  # a path that is another path's directory
        written[path] = data
    if not written:
        return
    run_git(repo, "add", "-A")
    run_git(repo, "update-index", "--index-version", str(version))
    if flagged and version >= 3:
        first = sorted(written)[0]
        run_git(repo, "update-index", "--skip-worktree", "--", first)
    index, _ = read_index(str(repo.path / ".git" / "index"))
    assert index is not None
    # git writes version 3 only for entries with extended flags, and 2 otherwise
    assert index.version == version or {index.version, version} == {2, 3}
    expected = ls_files_debug(repo)
    got = index.entries_under("")
    assert sorted(got) == sorted(expected)
    for path, entry in got.items():
        want = expected[path]
        assert entry.oid == want["oid"] and entry.mode == want["mode"]
        assert (entry.ctime_s, entry.mtime_s) == (want["ctime"], want["mtime"])
        assert (entry.dev, entry.ino, entry.uid, entry.gid, entry.size) == (
            want["dev"], want["ino"], want["uid"], want["gid"], want["size"])
        assert index.get(path) == entry
    if flagged and version >= 3:
        assert got[sorted(written)[0]].skip_worktree
    for path in written:
        if "/" in path:
            directory = path.rsplit("/", 1)[0]
            under = index.entries_under(directory)
            assert path in under and all(p.startswith(directory + "/") for p in under)


@pytest.mark.parametrize("data", [b"", b"XXXX", b"DIRC\x00\x00\x00\x09\x00\x00\x00\x00" + b"\x00" * 20,
                                  b"DIRC\x00\x00\x00\x02\x00\x00\x00\x05" + b"\x00" * 30])
def test_malformed_index_is_refused(data):
    with pytest.raises(IndexFormatError):
        GitIndex(data, 0)


def test_split_index_is_not_used(make_repo):
    repo = make_repo
    repo.write("a.py", "x\n")
    run_git(repo, "add", "a.py")
    run_git(repo, "update-index", "--split-index")
    with pytest.raises(IndexFormatError):
        read_index(str(repo.path / ".git" / "index"))


# -- conversions against git hash-object --path ------------------------------------------

contents = st.lists(st.sampled_from([b"a", b" ", b"\n", b"\r\n", b"\r", b"\x00", b"\x01", b"$Id$", b"$Id: x $",
                                     b"$Id:", b"$", b"Id", b"\x1a", b"\xff"]), max_size=30).map(b"".join)


@pytest.fixture(scope="module")
def convert_repo(tmp_path_factory):
    repo = WorkTree(tmp_path_factory.mktemp("convert") / "repo")
    (repo.path / ".gitattributes").write_text(
        "*.auto text=auto\n*.text text\n*.crlf eol=crlf\n*.autolf text=auto eol=lf\n"
        "*.ident ident\n*.bin -text\n*.both text ident\n"
    )
    return repo


_KINDS = {"auto": (("auto", None, None), False), "text": ((True, None, None), False),
          "crlf": ((None, None, "crlf"), False), "autolf": (("auto", None, "lf"), False),
          "ident": ((None, None, None), True), "bin": ((False, None, None), False),
          "both": ((True, None, None), True), "plain": ((None, None, None), False)}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=contents, kind=st.sampled_from(sorted(_KINDS)), autocrlf=st.sampled_from(["false", "true", "input"]))
def test_conversion_equals_git_hash_object(convert_repo, data, kind, autocrlf):
    (text, crlf, eol), ident = _KINDS[kind]
    action = crlf_action(text, crlf, eol, {"false": False, "true": True, "input": "input"}[autocrlf])
    converted = crlf_to_git(data, action, lambda: False)  # the path is not in the index
    if ident:
        converted = ident_to_git(converted)
    oid = run_git(convert_repo, "-c", f"core.autocrlf={autocrlf}", "hash-object", "--stdin",
                  f"--path=f.{kind}", input=data).decode().strip()
    assert str(pygit2.hash(converted)) == oid


def test_binary_guess_and_indexed_crlf():
    assert looks_binary(b"a\rb")  # a lone CR
    assert looks_binary(b"a\x00b")
    assert not looks_binary(b"a\r\nb\n")
    assert not looks_binary(b"text\x1a")  # a final ^Z does not count
    assert indexed_text_has_crlf(b"a\r\nb\r\n") and not indexed_text_has_crlf(b"a\nb\n")
    assert not indexed_text_has_crlf(b"\x00\r\n")
    assert crlf_to_git(b"a\r\n", Crlf.AUTO, lambda: True) == b"a\r\n"  # committed with CRLF
    assert crlf_to_git(b"a\r\n", Crlf.AUTO, lambda: False) == b"a\n"
    assert crlf_to_git(b"a\r\r\n", Crlf.TEXT, lambda: False) == b"a\r\n"
    assert ident_to_git(b"$Id: abc $ and $Id: x\n$") == b"$Id$ and $Id: x\n$"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet="ab\u00e9\u4e2d\n", max_size=12),
       encoding=st.sampled_from(["UTF-16", "UTF-16LE", "UTF-16BE", "ISO-8859-1", "UTF-8"]),
       codec=st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "latin-1", "utf-8"]))
def test_working_tree_encoding_equals_git(tmp_path_factory, text, encoding, codec):
    repo = _encoding_repo(tmp_path_factory)
    try:
        data = text.encode(codec)
    except UnicodeError:
        return
    (repo / ".gitattributes").write_text(f"*.enc working-tree-encoding={encoding}\n")
    result = subprocess.run(["git", "hash-object", "--stdin", "--path=f.enc"], cwd=repo, env=git_env(),
                            input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # without -w, git hashes what it cannot convert as it is (as git status compares it)
    converted = to_utf8(data, encoding)
    assert result.returncode == 0, result.stderr
    assert str(pygit2.hash(data if converted is None else converted)) == result.stdout.decode().strip()


_ENCODING_REPO = []


def _encoding_repo(factory) -> Path:
    if not _ENCODING_REPO:
        _ENCODING_REPO.append(WorkTree(factory.mktemp("encoding") / "repo").path)
    return _ENCODING_REPO[0]
