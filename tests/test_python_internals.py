"""The private parts of CPython's import system that zgit relies on, one test each, by name.

docs/identity.md ("What zgit relies on in Python") lists them.  None is a documented
interface, so a new Python may change or drop any of them; when one does, the test named
after it fails here, saying what zgit needs it for, instead of pinned imports going subtly
wrong elsewhere.  Each test runs in a fresh process, so that the import system's state is
its own.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def run_python(code: str, cwd: Path) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importlib_bootstrap_module_locks_holds_the_name_being_imported(tmp_path):
    """``importlib._bootstrap._module_locks``: zgit (zgit/_hook.py and
    zgit.loader.importer._pinned_import_underway) looks there for a pinned name whose
    import is underway, to import the real package above a pinned module directory when it
    is not on sys.path (unpickling a pinned model from a sub-directory or a notebook)."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "probe.py").write_text(textwrap.dedent("""\
        import importlib._bootstrap
        LOCKS = importlib._bootstrap._module_locks
        SEEN = sorted(name for name in list(LOCKS) if name.startswith("pkg"))
    """))
    out = run_python("""\
        import importlib._bootstrap
        assert isinstance(importlib._bootstrap._module_locks, dict), type(importlib._bootstrap._module_locks)
        import pkg.probe
        print(pkg.probe.SEEN)
    """, tmp_path)
    assert out == "['pkg.probe']", (
        "importlib._bootstrap._module_locks no longer maps the modules being imported to their "
        f"locks (a pinned import under way was seen as {out}): zgit cannot tell that a pinned "
        "import is underway; see docs/identity.md"
    )


def test_module_spec_initializing_is_true_while_the_module_runs(tmp_path):
    """``ModuleSpec._initializing``: ``load_source`` (zgit.loader._ready) tells a pinned module
    that is still executing (a circular import, another thread's load) from a finished one."""
    (tmp_path / "probe.py").write_text("DURING = getattr(__spec__, '_initializing', None)\n")
    out = run_python("""\
        import probe
        print(probe.DURING, getattr(probe.__spec__, "_initializing", None))
    """, tmp_path)
    assert out == "True False", (
        f"ModuleSpec._initializing is no longer True while a module executes and False after "
        f"(got {out}): zgit.loader._ready cannot tell a half-imported pin; see docs/identity.md"
    )


def test_linecache_cache_serves_a_lazy_one_tuple_entry(tmp_path):
    """``linecache.cache`` lazy entries, ``(function returning the source,)``: the loader
    (zgit.loader.importer.PinnedLoader.exec_module) registers one per pinned file, so that
    tracebacks, ``inspect`` and debuggers show the pinned lines of a path that is on no disk."""
    out = run_python("""\
        import linecache, traceback
        path = "/no/such/dir@0123/mod.py"
        linecache.cache[path] = (lambda: "def f():\\n    raise ValueError('pinned')\\n",)
        linecache.checkcache()  # must not drop a lazy entry for a path that is on no disk
        code = compile("def f():\\n    raise ValueError('pinned')\\n", path, "exec")
        namespace = {}
        exec(code, namespace)
        try:
            namespace["f"]()
        except ValueError as exc:
            text = "".join(traceback.format_exception(exc))
        print(repr(linecache.getline(path, 2)))
        print("raise ValueError('pinned')" in text)
    """, tmp_path)
    assert out.splitlines() == ['"    raise ValueError(\'pinned\')\\n"', "True"], (
        f"linecache no longer serves lazy (function,) entries of linecache.cache (got {out!r}): "
        "tracebacks of pinned code would show no source; see docs/identity.md"
    )


def test_a_module_s_own_builtins_import_serves_its_import_statements(tmp_path):
    """A module's own ``__builtins__`` dict: pinned modules get a copy whose ``__import__``
    maps imports of the module directory to the pin (zgit.loader.importer._pinned_import);
    import statements, also in functions called later, must look ``__import__`` up there."""
    out = run_python("""\
        import builtins
        seen = []
        def recording_import(name, *args, **kwargs):
            seen.append(name)
            return builtins.__import__(name, *args, **kwargs)
        own = dict(builtins.__dict__, __import__=recording_import)
        namespace = {"__builtins__": own, "__name__": "pinned"}
        exec("import json\\ndef later():\\n    from os import path\\n    return path\\n", namespace)
        namespace["later"]()
        print(seen)
    """, tmp_path)
    assert out == "['json', 'os']", (
        f"import statements no longer use the module's own __builtins__['__import__'] (saw {out}): "
        "pinned code would import the working version; see docs/identity.md"
    )


def test_imp_fix_co_filename_renames_a_code_object_and_the_ones_inside_it():
    """``_imp._fix_co_filename``: the bytecode cache of pinned blobs (zgit/loader/bytecode.py,
    on main) gives code unmarshalled from the cache the virtual path of the pinned file, as
    CPython's SourceLoader does for a ``.pyc``; without it tracebacks and ``inspect`` of
    cached pinned code would name the path it was first compiled under."""
    import types

    import _imp

    code = compile("def f():\n    return 1\n", "/first/path.py", "exec")
    _imp._fix_co_filename(code, "/repo/pkg/mod@0123/step.py")
    inner = [const for const in code.co_consts if isinstance(const, types.CodeType)]
    assert [code.co_filename] + [c.co_filename for c in inner] == ["/repo/pkg/mod@0123/step.py"] * 2, (
        "_imp._fix_co_filename no longer renames a code object and the code objects inside it: "
        "pinned code from zgit's bytecode cache would carry a stale file name; see docs/identity.md"
    )
