"""Git's clean-direction conversions (work tree -> repository), as convert.c does them.

Pure functions on bytes: which line-ending action the attributes and ``core.autocrlf``
select for a path, the CRLF -> LF conversion with git's binary heuristics (including its
rule that a file whose indexed version holds a CR is not converted under ``text=auto`` or
``core.autocrlf``), and the ``ident`` attribute's ``$Id: ...$`` -> ``$Id$``.  Filter
drivers and attribute look-ups need the repository and live in :mod:`zgit.gitrepo`.
"""

from __future__ import annotations

import enum
from typing import Callable, Optional, Union

AttrValue = Union[bool, str, None]  # True: set, False: unset (-attr), None: unspecified


class Crlf(enum.Enum):
    """What git does with line endings when a file goes into the repository."""

    BINARY = "binary"  # nothing
    TEXT = "text"  # CRLF -> LF wherever CR precedes LF
    AUTO = "auto"  # the same, only for files git guesses are text, and not if the index has CR


def _from_text_attr(value: AttrValue) -> Optional[Crlf]:
    # convert.c, git_path_check_crlf: for "text" and the older "crlf" attribute
    if value is True:
        return Crlf.TEXT
    if value is False:
        return Crlf.BINARY
    if value == "input":
        return Crlf.TEXT
    if value == "auto":
        return Crlf.AUTO
    return None


def crlf_action(text: AttrValue, crlf: AttrValue, eol: AttrValue, autocrlf: Union[bool, str, None]) -> Crlf:
    """The line-ending action for a path (convert.c, convert_attrs), from its ``text``,
    ``crlf`` and ``eol`` attributes and ``core.autocrlf`` (True, False/None or "input").

    ``eol=lf|crlf`` makes a path text unless ``text`` is unset (or ``text=auto``, which it
    keeps auto); only the direction towards the work tree tells lf from crlf, so both are
    the same here."""
    action = _from_text_attr(text)
    if action is None:
        action = _from_text_attr(crlf)
    if action is not Crlf.BINARY and eol in ("lf", "crlf"):
        action = Crlf.AUTO if action is Crlf.AUTO else Crlf.TEXT
    if action is None:
        if autocrlf is True or autocrlf == "input":
            return Crlf.AUTO
        return Crlf.BINARY
    return action


_NONPRINTABLE = bytes(c for c in range(32) if c not in (8, 9, 10, 13, 27, 12)) + b"\x7f"
_OTHERS = bytes(c for c in range(256) if c not in _NONPRINTABLE)


def looks_binary(data: bytes) -> bool:
    """Git's guess (convert.c, gather_stats + convert_is_binary): a lone CR, a NUL, or more
    than one non-printable byte in 128 printable ones (a final ^Z does not count)."""
    crlf = data.count(b"\r\n")
    if data.count(b"\r") != crlf:
        return True
    if b"\0" in data:
        return True
    nonprintable = len(data.translate(None, _OTHERS))
    if data.endswith(b"\x1a"):
        nonprintable -= 1
    printable = len(data.translate(None, _NONPRINTABLE)) - crlf - data.count(b"\n")
    return (printable >> 7) < nonprintable


def indexed_text_has_crlf(blob: bytes) -> bool:
    """convert.c, has_crlf_in_index: the indexed blob is text (by :func:`looks_binary`)
    and holds a CRLF.  Then ``text=auto`` and ``core.autocrlf`` leave the file alone."""
    return b"\r\n" in blob and not looks_binary(blob)


def crlf_to_git(data: bytes, action: Crlf, index_has_cr: Callable[[], bool]) -> bytes:
    """``data`` as git stores it (convert.c, crlf_to_git).  ``index_has_cr`` is asked only
    under AUTO, for a text file with CRLF: whether the path's indexed blob is text with a
    CRLF (:func:`indexed_text_has_crlf`; then git leaves the file alone, so that a file
    committed with CRLF stays clean)."""
    if action is Crlf.BINARY or not data or b"\r\n" not in data:
        return data
    if action is Crlf.AUTO:
        if looks_binary(data) or index_has_cr():
            return data
        return data.replace(b"\r", b"")  # no lone CR: every CR precedes an LF
    return data.replace(b"\r\n", b"\n")


_UNICODE_WITH_BOM = {"UTF16": "utf-16", "UTF32": "utf-32"}


def to_utf8(data: bytes, encoding: str) -> Optional[bytes]:
    """``data`` from its ``working-tree-encoding`` to UTF-8, as git stores it (convert.c,
    encode_to_git); None when git cannot convert it (then ``git add`` refuses the file
    and ``git status`` compares it unconverted).  As git: plain UTF-16/UTF-32 need a
    byte-order mark (and lose it), the -LE/-BE forms must not have one; a UTF-8 encoding
    needs no conversion."""
    name = encoding.upper().replace("-", "").replace("_", "")
    if not data or name == "UTF8":
        return data
    utf16_boms, utf32_boms = (b"\xff\xfe", b"\xfe\xff"), (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")
    try:
        if name in _UNICODE_WITH_BOM:
            if not data.startswith(utf16_boms if name == "UTF16" else utf32_boms):
                return None
            text = data.decode(_UNICODE_WITH_BOM[name])
        else:
            if name in ("UTF16LE", "UTF16BE") and data.startswith(utf16_boms):
                return None
            if name in ("UTF32LE", "UTF32BE") and data.startswith(utf32_boms):
                return None
            text = data.decode(encoding)
        return text.encode("utf-8")
    except (LookupError, UnicodeError):
        return None


def _count_ident(data: bytes) -> int:
    # convert.c, count_ident: "$Id$" and "$Id: ...$" without a line break inside
    count, i, size = 0, 0, len(data)
    while i < size:
        if data[i] != 0x24:  # '$'
            i += 1
            continue
        i += 1
        if size - i < 3:
            break
        if data[i : i + 2] != b"Id":
            continue
        ch = data[i + 2]
        i += 3
        if ch == 0x24:
            count += 1
        if ch != 0x3A:  # ':'
            continue
        while i < size:
            ch = data[i]
            i += 1
            if ch == 0x24:
                count += 1
                break
            if ch == 0x0A:
                break
    return count


def ident_to_git(data: bytes) -> bytes:
    """``$Id: <anything without a line break>$`` back to ``$Id$`` (convert.c, ident_to_git)."""
    if b"$Id" not in data or not _count_ident(data):
        return data
    out = bytearray()
    src = 0
    size = len(data)
    while True:
        dollar = data.find(b"$", src)
        if dollar < 0:
            break
        out += data[src : dollar + 1]
        src = dollar + 1
        if size - src > 3 and data[src : src + 3] == b"Id:":
            closing = data.find(b"$", src + 3)
            if closing < 0:
                break
            if b"\n" in data[src + 3 : closing]:
                continue  # a line break before the next dollar
            out += b"Id$"
            src = closing + 1
    out += data[src:]
    return bytes(out)
