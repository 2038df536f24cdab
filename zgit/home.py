"""The git work tree that holds a module's code, found from where the module lives.

Code installed editable (``pip install -e``) from a git work tree, or put on ``sys.path``
from one, is pinned by that work tree's commit (see :mod:`zgit.resolver`).  Such a pin is
loaded and audited from any current directory: zgit finds the work tree from the
``sys.path`` entry that holds the module's top-level package, without importing it.
"""

from __future__ import annotations

import os
from typing import Optional, Tuple

from zgit.errors import NotARepositoryError
from zgit.layout import find_top_level
from zgit.repository import Repository


def module_home(module: str, sha: str) -> Optional[Tuple[Repository, str]]:
    """The git work tree that holds module ``module``, as found from where it lives on
    ``sys.path`` (an editable install, a checkout on the path) without importing it, and
    the source root there (the ``sys.path`` entry); None unless that work tree has commit
    ``sha``.  Lets a pin of editable code load from any current directory.
    """
    top = module.partition(".")[0]
    for location in find_top_level(top):
        holder = os.path.dirname(location)
        try:
            home = Repository.coerce(location if os.path.isdir(location) else holder)
        except NotARepositoryError:
            continue
        root = os.path.realpath(home.root)
        if not (holder == root or holder.startswith(root + os.sep)):
            continue
        if home.git.has_commit(sha):
            rel = os.path.relpath(holder, root).replace(os.sep, "/")
            return home, ("" if rel == "." else rel)
    return None
