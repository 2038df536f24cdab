"""Identity of loaded objects (issue 7): pinned code stays pinned after the load.

Every test runs over both strategies.  The module directory ``trainers/my_awesome_trainer``
is committed at version 1 (the pin) and then at version 2 (the working tree moves on);
``common/`` is a package outside the module directory that the pinned code imports as
usual.  See docs/identity.md for the behaviour these tests settle.
"""

from __future__ import annotations

import copy
import importlib
import json
import multiprocessing
import os
import pickle
import subprocess
import sys
import textwrap
import typing

import pytest

import zgit
from zgit import load_source, resolve_source

STRATEGIES = ["checkout", "memory"]
MODULE_DIR = "trainers/my_awesome_trainer"
PACKAGE = "trainers.my_awesome_trainer"

MODEL = '''\
from __future__ import annotations

import dataclasses
from typing import ClassVar, Dict, List, Optional

from zgit import BaseStep
from common.registry import Registered
from .base import LocalBase

VERSION = {v}


class Trainer(BaseStep, Registered, LocalBase):
    VERSION = {v}
    kinds: ClassVar[Dict[str, int]] = {{}}

    def __init__(self, loss: str = "mse", epochs: int = 1) -> None:
        super().__init__(loss=loss, epochs=epochs)
        self.loss = loss
        self.epochs = epochs
        self.made_by = VERSION

    def relative_later(self):
        from .helper import helper_version
        return helper_version()

    def absolute_later(self):
        from trainers.my_awesome_trainer.helper import HELPER_VERSION
        return HELPER_VERSION

    def absolute_from_package_later(self):
        from trainers.my_awesome_trainer import helper
        return helper.HELPER_VERSION

    def dotted_later(self):
        import trainers.my_awesome_trainer.sub.deep
        return trainers.my_awesome_trainer.sub.deep.DEEP_VERSION

    def dotted_as_later(self):
        import trainers.my_awesome_trainer.sub.deep as deep
        return deep.DEEP_VERSION

    def from_parent_later(self):
        from trainers import my_awesome_trainer
        from trainers.my_awesome_trainer import sub
        import trainers.my_awesome_trainer.helper  # noqa: F401  (binds the attribute)
        return (my_awesome_trainer.helper.HELPER_VERSION, my_awesome_trainer.VERSION_IN_INIT,
                sub.__name__.count("@"))

    def climbing_relative_later(self):
        from ..my_awesome_trainer.helper import HELPER_VERSION
        from .. import my_awesome_trainer
        from ..my_awesome_trainer import sub
        return (HELPER_VERSION, my_awesome_trainer.VERSION_IN_INIT, sub.__name__.count("@"))

    def top_level_later(self):
        import trainers
        return (trainers.TOP, trainers.my_awesome_trainer.VERSION_IN_INIT)

    def importlib_absolute_later(self):
        import importlib
        return importlib.import_module("trainers.my_awesome_trainer.helper").HELPER_VERSION

    def importlib_relative_later(self):
        import importlib
        return importlib.import_module(".helper", __package__).HELPER_VERSION

    def outside_later(self):
        from common.util import UTIL_VERSION
        return UTIL_VERSION


class Fitted(Trainer):
    def __init__(self, weights: Optional[List[float]] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.weights = list(weights or [])

    def predict(self, x: float) -> float:
        return sum(self.weights) * x + VERSION


@dataclasses.dataclass
class Record:
    name: str
    score: float = 0.0
    tags: List[str] = dataclasses.field(default_factory=list)
    parent: Optional[Record] = None
    version: int = {v}


def make_fitted(weights):
    return Fitted(weights=weights, loss="hinge")
'''

BASE = '''\
BASE_VERSION = {v}
LOCAL = {{}}


class LocalBase:
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        LOCAL[cls.__name__] = cls
        cls.base_version = BASE_VERSION
'''

REGISTRY = '''\
NAMED = {}
QUALIFIED = {}


class Registered:
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        NAMED[cls.__name__] = cls
        QUALIFIED[f"{cls.__module__}.{cls.__qualname__}"] = cls
'''

MODEL_SOURCE = f"{PACKAGE}.model"


def write_version(repo, v: int) -> None:
    repo.write("trainers/__init__.py", "TOP = 'top-level, never pinned'\n")
    repo.write(f"{MODULE_DIR}/__init__.py", f"VERSION_IN_INIT = {v}\n")
    repo.write(f"{MODULE_DIR}/model.py", MODEL.format(v=v))
    repo.write(f"{MODULE_DIR}/base.py", BASE.format(v=v))
    repo.write(f"{MODULE_DIR}/helper.py", f"HELPER_VERSION = {v}\n\n\ndef helper_version():\n    return HELPER_VERSION\n")
    repo.write(f"{MODULE_DIR}/sub/__init__.py", "")
    repo.write(f"{MODULE_DIR}/sub/deep.py", f"DEEP_VERSION = {v}\n")
    repo.write("common/__init__.py", "")
    repo.write("common/registry.py", REGISTRY)
    repo.write("common/util.py", f"UTIL_VERSION = {v}\n")


@pytest.fixture(params=STRATEGIES)
def strategy(request):
    return request.param


@pytest.fixture
def pin(repo):
    """Version 1 committed (the pin), then version 2 committed: the working tree moved on."""
    write_version(repo, 1)
    sha = repo.commit("v1")
    write_version(repo, 2)
    repo.commit("v2")
    return sha


def _load(name, sha, strategy):
    return load_source(f"{MODEL_SOURCE}.{name}@{sha}", strategy=strategy)


def _working():
    """The working version, imported the ordinary way (the repository on sys.path)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return importlib.import_module(MODEL_SOURCE)


# -- deferred imports ------------------------------------------------------------------------


def test_deferred_imports_in_methods_get_the_pinned_version(repo, pin, strategy):
    Trainer = _load("Trainer", pin, strategy)
    trainer = Trainer(loss="x")
    # Long after the load: the working tree moves on once more, and the working version
    # is imported (and its helper, and its sub-package) before the pinned methods run.
    write_version(repo, 3)
    repo.commit("v3")
    working = _working()
    assert working.Trainer().absolute_later() == 3
    assert working.Trainer().dotted_later() == 3
    assert trainer.relative_later() == 1
    assert trainer.absolute_later() == 1
    assert trainer.absolute_from_package_later() == 1
    assert trainer.dotted_later() == 1
    assert trainer.dotted_as_later() == 1
    assert trainer.importlib_relative_later() == 1
    # the module directory's package imported from its parent, or by a relative import
    # that climbs out of the module directory and back in: still the pin
    assert trainer.from_parent_later() == (1, 1, 1)
    assert trainer.climbing_relative_later() == (1, 1, 1)
    assert working.Trainer().from_parent_later() == (3, 3, 0)
    assert working.Trainer().climbing_relative_later() == (3, 3, 0)
    # Outside the module directory, imports are as usual: the working code.
    assert trainer.top_level_later() == ("top-level, never pinned", 1)
    assert working.Trainer().top_level_later() == ("top-level, never pinned", 3)
    assert trainer.outside_later() == 3
    # The working version is still what ordinary imports give, afterwards too.
    assert sys.modules[f"{PACKAGE}.helper"].HELPER_VERSION == 3
    assert importlib.import_module(f"{PACKAGE}.sub.deep").DEEP_VERSION == 3
    assert working.Trainer().relative_later() == 3 and working.VERSION == 3


def test_deferred_imports_before_the_working_version_is_ever_imported(repo, pin, strategy):
    """The pinned methods run first; a working import afterwards still gets working code."""
    trainer = _load("Trainer", pin, strategy)()
    assert (trainer.absolute_later(), trainer.dotted_later(), trainer.relative_later()) == (1, 1, 1)
    assert f"{PACKAGE}.helper" not in sys.modules and f"{PACKAGE}.sub.deep" not in sys.modules
    working = _working()
    assert working.VERSION == 2
    assert (working.Trainer().absolute_later(), working.Trainer().dotted_later()) == (2, 2)
    assert importlib.import_module(f"{PACKAGE}.helper").HELPER_VERSION == 2
    assert trainer.absolute_later() == 1


def test_importlib_import_module_of_an_absolute_name_is_not_mapped(repo, pin, strategy):
    """``importlib.import_module("a.b.helper")`` in pinned code imports the *working*
    version: zgit maps the ``import`` statement (each pinned module's own ``__import__``),
    not calls into importlib.  Use the import statement, or a relative name with
    ``__package__`` (which carries the pin), as documented in docs/identity.md."""
    trainer = _load("Trainer", pin, strategy)()
    _working()
    assert trainer.importlib_absolute_later() == 2
    assert trainer.importlib_relative_later() == 1


# -- pickling and copies ---------------------------------------------------------------------


def test_pickle_round_trip_in_process(repo, pin, strategy):
    Fitted = _load("Fitted", pin, strategy)
    Record = _load("Record", pin, strategy)
    working = _working()
    fitted = Fitted(weights=[0.5, 0.5], epochs=3)
    record = Record("r", 0.5, ["a"], parent=Record("p"))
    for obj in (fitted, record):
        back = pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
        assert type(back) is type(obj) and back is not obj
    back = pickle.loads(pickle.dumps(fitted))
    assert back.weights == [0.5, 0.5] and back.args == {"weights": [0.5, 0.5], "epochs": 3} and back.predict(1.0) == 2.0
    assert back.absolute_later() == 1
    assert type(pickle.loads(pickle.dumps(record)).parent) is Record
    assert type(pickle.loads(pickle.dumps(working.Fitted()))) is working.Fitted
    assert pickle.loads(pickle.dumps(Fitted)) is Fitted  # the class itself, by reference
    # pickle names the pin in the module
    assert f"{PACKAGE}@{pin}.model".encode() in pickle.dumps(fitted)


def test_deepcopy_and_copy(repo, pin, strategy):
    Fitted = _load("Fitted", pin, strategy)
    Record = _load("Record", pin, strategy)
    fitted = Fitted(weights=[1.0])
    for obj in (fitted, Record("x", tags=["t"])):
        assert type(copy.deepcopy(obj)) is type(obj) and type(copy.copy(obj)) is type(obj)
    clone = copy.deepcopy(fitted)
    assert clone.weights == [1.0] and clone.weights is not fitted.weights and clone.relative_later() == 1


def _unpickle_in(cwd, path, extra_env=None, prelude=""):
    code = textwrap.dedent(f"""\
        import json, pickle, sys
        {prelude}
        import zgit
        with open({str(path)!r}, "rb") as handle:
            obj = pickle.load(handle)
        cls = type(obj)
        print(json.dumps({{
            "module": cls.__module__,
            "version": cls.VERSION,
            "weights": obj.weights,
            "predict": obj.predict(1.0),
            "later": [obj.absolute_later(), obj.relative_later(), obj.dotted_later()],
            "source": str(zgit.resolve_source(cls)),
            "own": cls.__dict__.get("__zgit_source__"),
            "base_step": isinstance(obj, zgit.BaseStep),
        }}))
        """)
    env = dict(os.environ, **(extra_env or {}))
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=120)


def test_unpickle_in_a_fresh_process_gives_the_pinned_version(repo, pin, strategy, tmp_path):
    Fitted = _load("Fitted", pin, strategy)
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(Fitted(weights=[2.0], epochs=5)))
    write_version(repo, 3)  # even with the module directory dirty in that process's tree
    out = _unpickle_in(repo.path, path)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got == {
        "module": f"{PACKAGE}@{pin}.model",
        "version": 1,
        "weights": [2.0],
        "predict": 3.0,
        "later": [1, 1, 1],
        "source": f"{MODEL_SOURCE}.Fitted@{pin}",
        "own": f"{MODEL_SOURCE}.Fitted@{pin}",
        "base_step": True,
    }
    # from a sub-directory of the repository, where the packages above the module
    # directory are not importable from sys.path: zgit brings them from the source root
    (repo.path / "notebooks").mkdir()
    out = _unpickle_in(repo.path / "notebooks", path, prelude="sys.path.remove('')")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["later"] == [1, 1, 1]


def test_unpickle_outside_any_repository_names_the_pin(repo, pin, strategy, tmp_path):
    Fitted = _load("Fitted", pin, strategy)
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(Fitted()))
    outside = tmp_path / "outside"
    outside.mkdir()
    env = {"GIT_CEILING_DIRECTORIES": str(tmp_path)}
    # the packages above the module directory importable (PYTHONPATH), or not at all
    for extra in ({"PYTHONPATH": str(repo.path)}, {}):
        out = _unpickle_in(outside, path, dict(env, **extra))
        assert out.returncode != 0
        last = out.stderr.strip().splitlines()[-1]
        assert f"{PACKAGE}@{pin}" in last, out.stderr
        assert "zgit.errors.SourceNotFoundError" in last and "repository" in last
    # in another repository, one without the commit: the error names the commit
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run(["git", "init", "-q", str(other)], check=True, capture_output=True)
    out = _unpickle_in(other, path, {"PYTHONPATH": str(repo.path)})
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert f"commit {pin} is not in the repository" in last and "fetch" in last, out.stderr


def _child_describe(obj):
    """Runs in a spawned process: what the pinned instance is there."""
    import zgit as child_zgit

    return (type(obj).__module__, type(obj).VERSION, obj.absolute_later(), obj.dotted_later(),
            str(child_zgit.resolve_source(type(obj))), obj)


def test_multiprocessing_spawn_hand_off(repo, pin, strategy):
    Fitted = _load("Fitted", pin, strategy)
    fitted = Fitted(weights=[1.5])
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        module, version, later, dotted, source, back = pool.apply(_child_describe, (fitted,))
    assert (module, version, later, dotted) == (f"{PACKAGE}@{pin}.model", 1, 1, 1)
    assert source == f"{MODEL_SOURCE}.Fitted@{pin}"
    assert type(back) is Fitted and back.weights == [1.5]


# -- everything else keeps working ----------------------------------------------------------


def test_base_classes_super_and_init_subclass(repo, pin, strategy):
    Trainer = _load("Trainer", pin, strategy)
    Fitted = _load("Fitted", pin, strategy)
    fitted = Fitted(weights=[1.0], loss="hinge", epochs=2)
    assert isinstance(fitted, zgit.BaseStep) and issubclass(Fitted, zgit.BaseStep)
    assert isinstance(fitted, Trainer) and issubclass(Fitted, Trainer)
    # super().__init__ ran the pinned Trainer.__init__ and BaseStep recorded the args
    assert (fitted.loss, fitted.epochs, fitted.made_by, fitted.weights) == ("hinge", 2, 1, [1.0])
    assert fitted.args == {"weights": [1.0], "loss": "hinge", "epochs": 2}
    assert repr(fitted).startswith("Fitted(")
    # __init_subclass__ of the pinned base ran for the pinned subclasses, at the pin
    base = sys.modules[f"{PACKAGE}@{pin}.base"]
    assert base.LOCAL == {"Trainer": Trainer, "Fitted": Fitted}
    assert Fitted.base_version == 1
    working = _working()
    assert working.Fitted.base_version == 2 and not isinstance(fitted, working.Trainer)
    assert sys.modules[f"{PACKAGE}.base"].LOCAL["Fitted"] is working.Fitted
    # a pinned class rebuilt from its stored args is the same step
    assert Fitted(**fitted.args).args == fitted.args


def test_pinned_dataclass_and_type_hints(repo, pin, strategy):
    Record = _load("Record", pin, strategy)
    Trainer = _load("Trainer", pin, strategy)
    import dataclasses

    assert dataclasses.is_dataclass(Record)
    record = Record("a", 1.0, parent=Record("b"))
    assert record.version == 1 and record == Record("a", 1.0, [], Record("b"), 1)
    assert [f.name for f in dataclasses.fields(Record)] == ["name", "score", "tags", "parent", "version"]
    assert dataclasses.replace(record, score=2.0).score == 2.0
    assert dataclasses.asdict(Record("c"))["version"] == 1
    hints = typing.get_type_hints(Record)
    assert hints["parent"] == typing.Optional[Record]  # the forward reference is the pinned class
    assert hints["tags"] == typing.List[str]
    init_hints = typing.get_type_hints(Trainer.__init__)
    assert init_hints == {"loss": str, "epochs": int, "return": type(None)}
    assert typing.get_type_hints(Trainer)["kinds"] == typing.ClassVar[typing.Dict[str, int]]
    working = _working()
    assert typing.get_type_hints(working.Record)["parent"] == typing.Optional[working.Record]


def test_registry_keyed_by_name_outside_the_module_directory(repo, pin, strategy):
    """What a name collision between the working and a pinned version does.

    A registry that lives *outside* the module directory (here ``common.registry``, filled
    by ``__init_subclass__``) is the working module, shared by every version: keyed by the
    bare class name, the class defined **last** wins, silently.  Loading a pin after the
    working version is imported replaces the working ``Trainer`` under ``"Trainer"`` by the
    pinned one, and importing the working version after a pin replaces the pinned one.
    Keyed by ``f"{cls.__module__}.{cls.__qualname__}"`` all stay, since the pinned module
    name carries the pin.  A registry *inside* the module directory is per version: the
    pinned code fills its own pinned copy.
    """
    Trainer = _load("Trainer", pin, strategy)
    registry = importlib.import_module("common.registry")
    assert registry.NAMED["Trainer"] is Trainer
    working = _working()
    assert registry.NAMED["Trainer"] is working.Trainer  # the later definition wins
    head = repo.head()
    AtHead = _load("Trainer", head, strategy)  # a pin loaded after the working version
    assert AtHead is not working.Trainer and AtHead.VERSION == working.Trainer.VERSION == 2
    assert registry.NAMED["Trainer"] is AtHead
    assert registry.QUALIFIED[f"{PACKAGE}.model.Trainer"] is working.Trainer
    assert registry.QUALIFIED[f"{PACKAGE}@{pin}.model.Trainer"] is Trainer
    assert registry.QUALIFIED[f"{PACKAGE}@{head}.model.Trainer"] is AtHead
    assert sys.modules[f"{PACKAGE}.base"].LOCAL["Trainer"] is working.Trainer
    assert sys.modules[f"{PACKAGE}@{pin}.base"].LOCAL["Trainer"] is Trainer
    assert sys.modules[f"{PACKAGE}@{head}.base"].LOCAL["Trainer"] is AtHead


def test_getsource_and_tracebacks_of_pinned_methods(repo, pin, strategy):
    import inspect

    Fitted = _load("Fitted", pin, strategy)
    assert "return sum(self.weights) * x + VERSION" in inspect.getsource(Fitted.predict)
    source = inspect.getsource(sys.modules[Fitted.__module__])
    assert "VERSION = 1" in source and "VERSION = 2" not in source


# -- the round trip: resolve_source and __zgit_source__ ------------------------------------


def test_resolve_source_of_pinned_objects_returns_their_pin(repo, pin, strategy):
    for name in ("Trainer", "Fitted", "Record", "make_fitted"):
        obj = _load(name, pin, strategy)
        assert obj.__dict__["__zgit_source__"] == f"{MODEL_SOURCE}.{name}@{pin}"
        assert resolve_source(obj) == zgit.Source(MODEL_SOURCE, name, pin)
        assert load_source(resolve_source(obj), strategy=strategy) is obj
    LocalBase = sys.modules[f"{PACKAGE}@{pin}.base"].LocalBase
    assert resolve_source(LocalBase) == zgit.Source(f"{PACKAGE}.base", "LocalBase", pin)
    # a pinned subclass has its own, not its base's
    Fitted = _load("Fitted", pin, strategy)
    assert Fitted.__dict__["__zgit_source__"] != Fitted.__mro__[1].__dict__["__zgit_source__"]
    # the round trip through a stored pipeline
    pipeline = zgit.Pipeline("round trip")
    pipeline.add_step("fit", Fitted(weights=[1.0]))
    step = pipeline.to_config()["steps"]["fit"]
    assert step["source"] == f"{MODEL_SOURCE}.Fitted@{pin}"


def test_working_subclass_of_a_pinned_class_resolves_to_itself(repo, pin, strategy):
    repo.write("app/__init__.py", "")
    repo.write("app/mine.py", textwrap.dedent(f"""\
        import zgit

        PinnedTrainer = zgit.load_source("{MODEL_SOURCE}.Trainer@{pin}", strategy="{strategy}")


        class Mine(PinnedTrainer):
            pass
        """))
    head = repo.commit("a working subclass of a pinned class")
    sys.path.insert(0, str(repo.path))
    mine = importlib.import_module("app.mine")
    Trainer = _load("Trainer", pin, strategy)
    assert mine.PinnedTrainer is Trainer and issubclass(mine.Mine, Trainer)
    assert "__zgit_source__" not in mine.Mine.__dict__  # not inherited into its own __dict__
    assert resolve_source(mine.Mine) == zgit.Source("app.mine", "Mine", head)
    assert resolve_source(Trainer) == zgit.Source(MODEL_SOURCE, "Trainer", pin)
    instance = mine.Mine()
    assert type(pickle.loads(pickle.dumps(instance))) is mine.Mine
    assert instance.absolute_later() == 1  # inherited methods still run pinned code
