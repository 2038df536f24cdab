"""zgit's start-up hook: pinned module names resolve in every process of the environment.

Installing zgit puts ``zgit-pinned-names.pth`` into site-packages; its one line imports
this module when the interpreter starts (guarded: a failure there is ignored).  This
module imports nothing and appends one finder to the *end* of ``sys.meta_path``, so it
is consulted only by imports that every other finder failed.  When such an import names
a pin (``a.b@<sha>.c``: a worker of joblib/loky, ``multiprocessing`` or
``concurrent.futures`` unpickling a pinned object, a script loading a pickled model), it
imports zgit, installs zgit's own import hook and hands the import to it; from then on
zgit's hook serves pins by itself.  A process that never meets a pinned name never
imports zgit.

This module must never break an interpreter, whatever state zgit is in (half
uninstalled, a broken dependency): at start it only defines a class; the cost of a
failed zgit import is paid by the one import that needed zgit, as an error that says
what to do.
"""

import sys

_HEX = frozenset("0123456789abcdef")

#: The module name that made this hook import zgit (None until one did).
activated_by = None


def _pin_in(name):
    """Whether ``name`` carries a pin: ``@`` and 40 lower-case hex digits, then ``.`` or the end."""
    at = name.find("@")
    while at != -1:
        sha = name[at + 1:at + 41]
        if len(sha) == 40 and name[at + 41:at + 42] in ("", ".") and _HEX.issuperset(sha):
            return True
        at = name.find("@", at + 1)
    return False


def _pinned_import_underway(top):
    """A pinned module below the top-level package ``top`` that is being imported now, or
    None: importing ``a.b@<sha>.c`` first imports ``a``, with the pinned names' locks held."""
    locks = getattr(sys.modules.get("_frozen_importlib"), "_module_locks", None) or {}
    prefix = top + "."
    for name in list(locks):
        if name.startswith(prefix) and _pin_in(name):
            return name
    return None


class PinnedNameFinder:
    """Last on ``sys.meta_path``: imports zgit for a pinned name no other finder found."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if "@" in fullname:
            if not _pin_in(fullname):
                return None
            pinned = fullname
        elif path is not None or "." in fullname:
            return None
        else:
            pinned = _pinned_import_underway(fullname)
            if pinned is None:
                return None
        installed = sys.modules.get("zgit.loader.importer")
        if getattr(installed, "PinnedFinder", None) in sys.meta_path:
            return None  # zgit's own hook is installed and has already had its say
        importer = _import_zgit(fullname, pinned)
        importer.install()
        global activated_by
        activated_by = fullname
        finder = importer.PinnedFinder if "@" in fullname else importer.PinnedParentFinder
        return finder.find_spec(fullname, path, target)

    @classmethod
    def invalidate_caches(cls):
        pass


def _import_zgit(fullname, pinned):
    try:
        from zgit.loader import importer
    except Exception as exc:
        needed = "" if pinned == fullname else f" (the package above {pinned!r})"
        raise ModuleNotFoundError(
            f"No module named {fullname!r}{needed}: the name {pinned!r} carries a git commit, so "
            f"it names a module pinned by zgit, and importing zgit failed here "
            f"({type(exc).__name__}: {exc}). "
            "Install zgit in this environment (pip install zgit; reinstall it if it is "
            "broken), and run from inside a clone of the repository that has the commit",
            name=fullname,
        ) from exc
    return importer


def install():
    """Append the finder to ``sys.meta_path`` (idempotent)."""
    if not any(finder is PinnedNameFinder for finder in sys.meta_path):
        sys.meta_path.append(PinnedNameFinder)


install()
