"""Uncaught exceptions show the source lines of pinned frames.

Pinned modules have virtual file names (``<root>/<module dir>@<sha>/<file>``) that exist on
no disk; :mod:`linecache` is fed their lines, so :mod:`traceback` shows them.  The
interpreter's own printer for uncaught exceptions reads the file by its path instead
(Python 3.11+) and shows no line.  :func:`install` chains a ``sys.excepthook`` (and a
``threading.excepthook``) that prints
through :mod:`traceback` only when a pinned frame is in the traceback, and otherwise hands
the exception to the hook it replaced: ``__file__`` stays virtual, nothing else changes.
"""

from __future__ import annotations

import re
import sys
from types import TracebackType
from typing import Any, Callable, Optional, Set, Type

_VIRTUAL = re.compile(r"@[0-9a-f]{40}(?:/|$)")


def _has_pinned_frame(exc: Optional[BaseException], seen: Set[int]) -> bool:
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        tb = exc.__traceback__
        while tb is not None:
            if _VIRTUAL.search(tb.tb_frame.f_code.co_filename):
                return True
            tb = tb.tb_next
        if _has_pinned_frame(exc.__cause__, seen):
            return True
        exc = exc.__context__
    return False


def _chained(previous: Callable[..., Any]) -> Callable[..., Any]:
    def excepthook(kind: Type[BaseException], value: BaseException, tb: Optional[TracebackType]) -> None:
        try:
            pinned = _has_pinned_frame(value, set())
        except Exception:  # never let the hook itself hide the exception
            pinned = False
        if not pinned:
            return previous(kind, value, tb)
        import traceback

        traceback.print_exception(kind, value, tb, file=sys.stderr)

    excepthook.__zgit_previous__ = previous  # type: ignore[attr-defined]
    return excepthook


def _chained_thread_hook(previous: Callable[..., Any]) -> Callable[..., Any]:
    def excepthook(args: Any) -> None:
        try:
            pinned = args.exc_value is not None and _has_pinned_frame(args.exc_value, set())
        except Exception:
            pinned = False
        if not pinned:
            return previous(args)
        import traceback

        name = args.thread.name if args.thread is not None else "<unknown>"
        print(f"Exception in thread {name}:", file=sys.stderr, flush=True)
        traceback.print_exception(args.exc_type, args.exc_value, args.exc_traceback, file=sys.stderr)

    excepthook.__zgit_previous__ = previous  # type: ignore[attr-defined]
    return excepthook


def install() -> None:
    """Chain zgit's hooks in front of the current ``sys.excepthook`` and
    ``threading.excepthook`` (idempotent)."""
    import threading

    if not hasattr(sys.excepthook, "__zgit_previous__"):
        sys.excepthook = _chained(sys.excepthook)
    if not hasattr(threading.excepthook, "__zgit_previous__"):
        threading.excepthook = _chained_thread_hook(threading.excepthook)
