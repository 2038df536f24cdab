"""Safe YAML reading and writing for zgit's files.

Only PyYAML's safe loader ever builds objects, so ``!!python/...`` tags are rejected,
never executed.  Anchors and aliases are refused: zgit never writes them, and a
document built from nested aliases ("billion laughs") must not blow up whoever walks it.
"""

from __future__ import annotations

import itertools
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from zgit.errors import ConfigError

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SafeDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

MAX_BYTES = 16 * 1024 * 1024

RepresenterError = yaml.representer.RepresenterError  # what dumps() raises for a value YAML cannot hold


class _NoAliasDumper(_SafeDumper):  # type: ignore[misc, valid-type]
    def ignore_aliases(self, data: Any) -> bool:
        return True


def loads(text: "str | bytes", where: str) -> Any:
    """Parse one YAML document safely; :class:`ConfigError` naming ``where`` on failure."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    if b"&" not in raw and b"*" not in raw and _flow_depth(raw) <= MAX_DEPTH:
        # No anchor or alias can be in it, so build the plain mappings, lists and strings
        # without PyYAML's generic constructor machinery and without the event pre-check:
        # most of the time of reading a file.  Anything unusual takes the checked path.
        try:
            return _lean_load(raw)
        except _Fallback:
            pass
        except _TooDeep:
            raise ConfigError(f"{where}: nested more than {MAX_DEPTH} levels deep") from None
        except yaml.YAMLError as exc:
            raise ConfigError(_syntax_error(where, exc)) from exc
        except Exception as exc:  # PyYAML's constructors fail oddly on odd input
            raise ConfigError(f"{where}: cannot be read as YAML: {type(exc).__name__}: {exc}") from exc
    return _loads_checked(text, where)


def _loads_checked(text: "str | bytes", where: str) -> Any:
    """:func:`loads` through the event pre-check and PyYAML's safe constructor."""
    try:
        _check_events(text, where)
        loader = _SafeLoader(text)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except ConfigError:
        raise
    except yaml.YAMLError as exc:
        if "nesting depth" in str(exc):
            # PyYAML 6.0.3+ has a depth limit of its own, met before zgit's count.
            raise ConfigError(f"{where}: nested more than {MAX_DEPTH} levels deep") from None
        raise ConfigError(_syntax_error(where, exc)) from exc
    except Exception as exc:  # PyYAML's constructors fail oddly on odd input (AttributeError...)
        raise ConfigError(f"{where}: cannot be read as YAML: {type(exc).__name__}: {exc}") from exc
    _refuse_shared_nodes(data, where)
    return data


MAX_DEPTH = 100


def _syntax_error(where: str, exc: "yaml.YAMLError") -> str:
    """One line naming the file, the line and column, and what is wrong there.

    PyYAML's own text spans several lines and names the stream (``"<byte string>"``),
    not the file.
    """
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    if problem is None:
        problem = " ".join(str(exc).split())
    context = getattr(exc, "context", None)
    if context and context != problem:
        problem = f"{problem} ({context})"
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{where}: not valid YAML{at}: {' '.join(str(problem).split())}"


def _check_events(text: "str | bytes", where: str) -> None:
    """Refuse aliases (even of scalars: one big string referenced 10,000 times is written
    out 10,000 times when the pipeline is saved again) and nesting deeper than
    ``MAX_DEPTH``, which would overflow the C stack of libyaml's composer (a segfault,
    not an exception).  The event stream is flat, so this stops at the first offence."""
    loader = _SafeLoader(text)
    try:
        depth = 0
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.AliasEvent):
                raise ConfigError(
                    f"{where}: uses YAML anchors/aliases (& and *), which zgit files may not; "
                    "write the values out"
                )
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ConfigError(f"{where}: nested more than {MAX_DEPTH} levels deep")
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
    finally:
        loader.dispose()


def read(path: "str | os.PathLike[str]", where: "str | None" = None) -> Any:
    """Read and parse the YAML file at ``path`` (see :func:`loads`); ``where`` names it
    in errors (default: the path).  Directories, devices, pipes and files larger than
    ``MAX_BYTES`` are a :class:`ConfigError`, never a hang or a traceback."""
    where = where or str(path)
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"{where}: is a directory, not a YAML file")
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{where}: is not a regular file (a device, socket or pipe)")
        if st.st_size > MAX_BYTES:
            raise ConfigError(f"{where}: {st.st_size} bytes is too large for a zgit YAML file")
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the file: {exc.strerror or exc}") from exc
    return loads(raw, where)


def dumps(data: Any) -> str:
    """YAML text for ``data``: block style, keys in insertion order, no aliases."""
    return yaml.dump(
        data, Dumper=_NoAliasDumper, sort_keys=False, default_flow_style=False, allow_unicode=True
    )


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers see the old or the new file, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _refuse_shared_nodes(data: Any, where: str) -> None:
    """Raise if a container is reachable twice (an alias); linear in distinct nodes."""
    seen: set = set()
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, (dict, list, set)):
            if id(node) in seen:
                raise ConfigError(
                    f"{where}: uses YAML anchors/aliases (& and *), which zgit files may not; "
                    "write the values out"
                )
            seen.add(id(node))
            if isinstance(node, dict):
                stack.extend(node.keys())
                stack.extend(node.values())
            else:
                stack.extend(node)


# -- the fast path for plain documents ---------------------------------------------------


class _Fallback(Exception):
    """The document needs PyYAML's full constructor (merge keys, odd tags, complex keys)."""


class _TooDeep(Exception):
    pass


_TAG = "tag:yaml.org,2002:"
_PLAIN_SCALARS = frozenset(_TAG + t for t in ("null", "bool", "int", "float", "timestamp", "binary"))


def _lean_build(node: Any, loader: Any, depth: int) -> Any:
    cls = node.__class__
    if cls is yaml.ScalarNode:
        if node.tag == _TAG + "str":
            return node.value
        if node.tag in _PLAIN_SCALARS:
            return loader.construct_object(node)
        raise _Fallback
    depth += 1
    if depth > MAX_DEPTH:
        raise _TooDeep
    if cls is yaml.MappingNode and node.tag == _TAG + "map":
        out = {}
        for key_node, value_node in node.value:
            key = _lean_build(key_node, loader, depth)
            try:
                out[key] = _lean_build(value_node, loader, depth)
            except TypeError:  # an unhashable key: let PyYAML say so
                raise _Fallback from None
        return out
    if cls is yaml.SequenceNode and node.tag == _TAG + "seq":
        return [_lean_build(item, loader, depth) for item in node.value]
    raise _Fallback


def _lean_load(raw: bytes) -> Any:
    """``yaml.safe_load(raw)`` for documents without anchors; :class:`_Fallback` when unsure."""
    loader = _SafeLoader(raw)
    try:
        node = loader.get_single_node()
        return None if node is None else _lean_build(node, loader, 0)
    finally:
        loader.dispose()


_BRACKETS = bytes.maketrans(b"[{]}", b"\x01\x01\x02\x02")
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[{]}")


def _flow_depth(raw: bytes) -> int:
    """An upper bound on how deep ``[``/``{`` nest in ``raw`` (brackets in strings count);
    libyaml's composer can crash on deep flow nesting, so such documents take the checked path."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return 0
    steps = raw.translate(_BRACKETS, _NOT_BRACKETS)
    return max(itertools.accumulate(1 if b == 1 else -1 for b in steps))
