"""Where in the user's code a call into zgit came from, so that warnings point there."""

from __future__ import annotations

import sys
import warnings
from typing import Type


def _is_zgit(frame) -> bool:
    name = frame.f_globals.get("__name__")
    return isinstance(name, str) and (name == "zgit" or name.startswith("zgit."))


def warn(message: str, category: Type[Warning]) -> None:
    """:func:`warnings.warn` at the first frame outside zgit: the user's ``save()``,
    ``resolve_source()`` or ``load_source()`` line, however deep inside zgit the warning
    was decided (counted, not fixed, so that it stays right as zgit's own calls change)."""
    frame = sys._getframe(1)
    level = 2  # 1 is this function; 2 its caller
    while frame.f_back is not None and _is_zgit(frame):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
