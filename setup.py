"""Build zgit; everything but the start-up hook is declared in setup.cfg.

The start-up hook (``_zgit_startup``, see its docstring and docs/identity.md) needs a
``.pth`` file at the top of site-packages, which no setup.cfg option can place.  It is
added to both kinds of wheel: regular wheels get it from ``build_py`` (the top of
``build_lib`` is the top of site-packages); editable (PEP 660) wheels, which setuptools
assembles without ``build_lib``, get it written into the wheel by ``editable_wheel``,
together with a copy of ``_zgit_startup.py``: at start-up it is then found in
site-packages with the bytecode pip compiled, as in a regular install, instead of
through the editable finder and compiled at every start (``PYTHONDONTWRITEBYTECODE``).
Edit ``_zgit_startup.py``, then reinstall (scripts/test.sh does when it changes).
Either way the files are in the wheel's RECORD, so ``pip uninstall`` removes them.
"""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PTH_NAME = "zgit-pinned-names.pth"
STARTUP_MODULE = "_zgit_startup.py"
# site.py executes a .pth line that starts with "import".  The try keeps a broken or
# half-removed zgit from printing an error at every interpreter start.
PTH_LINE = 'import sys; exec("try:\\n import _zgit_startup\\nexcept Exception:\\n pass")\n'


class build_py_with_pth(build_py):
    """``build_py`` that also puts the start-up hook's ``.pth`` file into ``build_lib``."""

    def run(self):
        super().run()
        if not getattr(self, "editable_mode", False):
            target = os.path.join(self.build_lib, PTH_NAME)
            with open(target, "w", encoding="utf-8") as handle:
                handle.write(PTH_LINE)

    def get_outputs(self, include_bytecode=1):
        outputs = super().get_outputs(include_bytecode)
        if not getattr(self, "editable_mode", False):
            outputs.append(os.path.join(self.build_lib, PTH_NAME))
        return outputs


cmdclass = {"build_py": build_py_with_pth}

try:
    from setuptools.command.editable_wheel import editable_wheel
except ImportError:  # setuptools < 64: no PEP 660 editable wheels to extend
    pass
else:

    class _WithPth:
        """Wraps the strategy that writes an editable wheel: also writes the ``.pth`` file
        and a copy of the start-up module."""

        def __init__(self, strategy):
            self._strategy = strategy

        def __enter__(self):
            self._strategy.__enter__()
            return self

        def __exit__(self, *exc_info):
            return self._strategy.__exit__(*exc_info)

        def __call__(self, wheel, files, mapping):
            self._strategy(wheel, files, mapping)
            wheel.writestr(PTH_NAME, PTH_LINE.encode("utf-8"))
            with open(os.path.join(HERE, STARTUP_MODULE), "rb") as handle:
                wheel.writestr(STARTUP_MODULE, handle.read())

    class editable_wheel_with_pth(editable_wheel):
        """``editable_wheel`` whose wheel also carries the start-up hook's ``.pth`` file."""

        def _select_strategy(self, *args, **kwargs):
            return _WithPth(super()._select_strategy(*args, **kwargs))

    cmdclass["editable_wheel"] = editable_wheel_with_pth

setup(cmdclass=cmdclass)
