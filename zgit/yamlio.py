"""Safe YAML reading and writing for zgit's files.

Only PyYAML's safe loader ever builds objects, so ``!!python/...`` tags are rejected,
never executed.  Anchors and aliases are refused: zgit never writes them, and a
document built from nested aliases ("billion laughs") must not blow up whoever walks it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from zgit.errors import ConfigError

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SafeDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

MAX_BYTES = 16 * 1024 * 1024


class _NoAliasDumper(_SafeDumper):  # type: ignore[misc, valid-type]
    def ignore_aliases(self, data: Any) -> bool:
        return True


def loads(text: "str | bytes", where: str) -> Any:
    """Parse one YAML document safely; :class:`ConfigError` naming ``where`` on failure."""
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
        raise ConfigError(f"{where}: not valid YAML: {exc}") from exc
    except Exception as exc:  # PyYAML's constructors fail oddly on odd input (AttributeError...)
        raise ConfigError(f"{where}: cannot be read as YAML: {type(exc).__name__}: {exc}") from exc
    _refuse_shared_nodes(data, where)
    return data


MAX_DEPTH = 100


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


def read(path: "str | os.PathLike[str]") -> Any:
    """Read and parse the YAML file at ``path`` (see :func:`loads`)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(f"{path}: {size} bytes is too large for a zgit YAML file")
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc
    return loads(raw, str(path))


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
