"""The audit parses each pinned blob once (issue 14, "audit per distinct module").

One parse gives both the names a module binds and its import statements; the result is
shared by every step, pipeline and pin that holds the same blob.  The import scan visits
statements only: a differential test against a full ``ast.walk`` over real modules shows
it finds the same imports.
"""

from __future__ import annotations

import ast
import os
import sys
import sysconfig
from pathlib import Path

import pytest

from zgit import audit
from zgit.audit import audit_paths, module_facts, module_imports

ROOT = Path(__file__).resolve().parent.parent


def _walked(source: bytes):
    """The imports of ``source`` as the audit found them before: every node walked."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.extend((0, a.name, (), node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            out.append((node.level or 0, node.module or "", tuple(a.name for a in node.names), node.lineno))
    return sorted(out)


def _corpus():
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(ROOT.glob("zgit/**/*.py")) + sorted(ROOT.glob("tests/*.py"))
    files += [stdlib / name for name in (
        "importlib/_bootstrap.py", "importlib/_bootstrap_external.py", "pkgutil.py", "inspect.py",
        "typing.py", "dataclasses.py", "subprocess.py", "unittest/mock.py", "pickle.py", "ast.py",
    )]
    return [f for f in files if f.is_file()]


@pytest.mark.parametrize("path", _corpus(), ids=lambda p: p.name)
def test_the_statement_scan_finds_what_a_full_walk_finds(path):
    source = path.read_bytes()
    found = sorted((r.level, r.module, r.names, r.lineno) for r in module_imports(source, str(path)))
    assert found == _walked(source)


def test_imports_in_every_kind_of_statement_in_source_order():
    source = b"""\
import a
if x:
    import b
else:
    from c import d
for i in y:
    import e
else:
    import f
while z:
    import g
try:
    import h
except ImportError as exc:
    import i
else:
    import j
finally:
    import k
with open(p) as q:
    import l
class M:
    import n
    def o(self):
        import p
async def r():
    async with s:
        import t
    async for u in v:
        import w
match value:
    case 1:
        import x1
    case _:
        from . import y1
try:
    pass
except* ValueError:
    import z1
lam = lambda: __import__("not_a_statement")
"""
    if sys.version_info < (3, 11):
        source = source.replace(b"except* ValueError", b"except ValueError")
    refs = module_imports(source)
    assert [r.module or r.names[0] for r in refs] == [
        "a", "b", "c", "e", "f", "g", "h", "i", "j", "k", "l", "n", "p", "t", "w", "x1", "y1", "z1"]
    assert [r.lineno for r in refs] == sorted(r.lineno for r in refs)
    assert module_facts(b"X = 1\n").imports == ()
    assert module_facts(b"class (:\n").names.error


def test_each_blob_is_parsed_once_per_audit(repo, monkeypatch):
    """Six pins of two module directories in 40 pipelines: every distinct blob of the
    module directories is parsed exactly once, the step module included."""
    repo.write("models/__init__.py", "")
    repo.write("models/shared.py", "X = 1\n")
    for k in range(2):
        repo.write(f"models/m{k}/__init__.py", "")
        repo.write(f"models/m{k}/helpers.py", "from models.shared import X\n")
    shas = []
    for v in range(3):
        for k in range(2):
            repo.write(f"models/m{k}/step.py", f"from .helpers import X\n\nclass Step:\n    v = {v}\n")
        shas.append(repo.commit(f"v{v}"))
    repo.write("pipelines/.keep", "")
    for n in range(40):
        lines = ["version: '1'", f"name: p{n}", "steps:"]
        for i in range(4):
            k, sha = (n + i) % 2, shas[(n + i) % 3]
            lines += [f"  s{i}:", f"    source: models.m{k}.step.Step@{sha}"]
        repo.write(f"pipelines/p{n}.yaml", "\n".join(lines) + "\n")
    parsed = []
    real = audit._parse

    def counting(source, filename):
        parsed.append((filename, source))
        return real(source, filename)

    monkeypatch.setattr(audit, "_parse", counting)
    report = audit_paths(None, repo=repo.path)
    assert report.summary()["steps"] == 160 and report.summary()["errors"] == 0
    blobs = {repo.git("rev-parse", f"{sha}:models/m{k}/{name}").strip()
             for sha in shas for k in range(2) for name in ("__init__.py", "helpers.py", "step.py")}
    assert len(parsed) == len({source for _, source in parsed}) == len(blobs)
    # the findings are what they were: helpers import models.shared, outside the directory
    codes = {f["code"] for f in report.to_dict()["files"][0]["steps"][0]["findings"]}
    assert "outside-import" in codes and codes <= {"outside-import", "drift"}


def test_names_lists_one_directory_of_a_commit(repo):
    from zgit.gitrepo import open_repo

    repo.write("a/b/c.py", "")
    repo.write("a/d.py", "")
    repo.write("top.py", "")
    sha = repo.commit()
    git = open_repo(repo.path)
    assert sorted(git.names(sha, "")) == ["a", "top.py"]
    assert sorted(git.names(sha, "a")) == ["b", "d.py"]
    assert git.names(sha, "a/d.py") is None  # a file
    assert git.names(sha, "nowhere") is None
