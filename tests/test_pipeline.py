"""Pipelines: BaseStep args, YAML save and schema, Repository lookups by name."""

import sys

import pytest
import yaml

import zgit
from zgit import (
    BaseStep,
    ConfigError,
    NotARepositoryError,
    Pipeline,
    PipelineNotFoundError,
    Repository,
    UnpinnedSourceWarning,
)
from zgit.pipeline import slugify
from tests._project import SOURCE, build_history, write_version


class Doubler(BaseStep):
    def __init__(self, factor=2):
        self.factor = factor

    def run(self, data):
        return data * self.factor


def test_base_step_records_keyword_arguments():
    step = Doubler(factor=3)
    assert step.args == {"factor": 3} and step.factor == 3
    assert Doubler().args == {"factor": 2}  # defaults are recorded too (issue 15 item 8)
    with pytest.raises(TypeError, match="keyword arguments only"):
        Doubler(3)


class Configured(BaseStep):
    def __init__(self, rate=0.1, layers=[8, 4], *, name="net", seed=None, optimizer=object(), **extra):
        self.layers = layers


class PassThrough(BaseStep):
    pass


def test_base_step_records_bound_arguments_with_their_defaults():
    step = Configured(rate=0.5, momentum=0.9)
    # constructor order, then **kwargs as given; a default that is not plain data is left out
    assert list(step.args) == ["rate", "layers", "name", "seed", "momentum"]
    assert step.args == {"rate": 0.5, "layers": [8, 4], "name": "net", "seed": None, "momentum": 0.9}
    # the record holds a copy of a default, never the default object itself
    assert step.args["layers"] == step.layers and step.args["layers"] is not step.layers
    # the stored form rebuilds the same step, through YAML too
    again = Configured(**yaml.safe_load(yaml.safe_dump(step.args)))
    assert again.args == step.args
    assert PassThrough().args == {} and PassThrough(x=1).args == {"x": 1}
    from zgit.steps import LeastSquaresTrainer

    assert LeastSquaresTrainer().args == {
        "features": None, "label": None, "l2": 0.0, "fit_intercept": True, "fit_on": "train"}


@pytest.mark.parametrize("name, slug", [
    ("My Awesome Pipeline", "my_awesome_pipeline"),
    ("train--v2 (final)", "train_v2_final_"),
    ("ÄÖ ok", "_ok"),
])
def test_slug(name, slug):
    assert slugify(name) == slug


def test_slug_needs_letters():
    with pytest.raises(ConfigError):
        Pipeline("!!!")


def _trainer_pipeline(repo, name="My Awesome Pipeline", **args):
    sys.path.insert(0, str(repo.path))
    from trainers.my_awesome_trainer.my_trainer_step import MyAwesomeTrainer

    pipeline = Pipeline(name)
    pipeline.add_step("training", MyAwesomeTrainer(**args))
    return pipeline


def test_save_writes_the_documented_yaml(repo):
    shas = build_history(repo, 1)
    Repository.init(repo.path)
    path = _trainer_pipeline(repo, loss="binary_crossentropy", epochs=20).save()
    assert path == (repo.path / "pipelines" / "my_awesome_pipeline.yaml").resolve()
    text = path.read_text()
    assert yaml.safe_load(text) == {
        "version": "1",
        "name": "My Awesome Pipeline",
        "steps": {"training": {"source": f"{SOURCE}@{shas[0]}",
                               "args": {"loss": "binary_crossentropy", "epochs": 20}}},
    }
    assert text.startswith("version: '1'\nname: My Awesome Pipeline\nsteps:\n")


def test_the_story_old_class_comes_back_and_tree_is_untouched(repo):
    """Commit a step, save a pipeline, change and commit the step: the old one comes back."""
    build_history(repo, 1)
    _trainer_pipeline(repo, epochs=5).save()
    repo.commit("save pipeline")
    write_version(repo, 1)
    repo.commit("trainer v1")
    status, files = repo.status(), repo.snapshot()
    for strategy in ("checkout", "memory"):
        pipeline = Repository().get_pipeline_by_name("My Awesome Pipeline", strategy=strategy)
        trainer = pipeline.steps["training"]
        assert trainer.version() == (0, 0) and trainer.epochs == 5 and trainer.args == {"loss": "mse", "epochs": 5}
        zgit.loader.forget_loaded()
    assert (repo.status(), repo.snapshot()) == (status, files)
    # saving the loaded pipeline again keeps the pin it came from
    assert yaml.safe_load(pipeline.save().read_text())["steps"]["training"]["source"].endswith(
        zgit.resolve_source(type(trainer)).pin)


def test_another_pipelines_file_is_never_overwritten(repo):
    build_history(repo, 1)
    first = _trainer_pipeline(repo, name="a b").save()
    _trainer_pipeline(repo, name="a b").save()  # the same pipeline may be saved again
    before = first.read_bytes()
    with pytest.raises(ConfigError, match="holds pipeline 'a b'"):
        _trainer_pipeline(repo, name="A-B").save()
    assert first.read_bytes() == before


def test_unknown_top_level_keys_are_kept(repo):
    shas = build_history(repo, 1)
    repo.write("pipelines/p.yaml", f"version: '1'\nname: P\nowner: ml-team\nsteps:\n"
                                   f"  t:\n    source: {SOURCE}@{shas[0]}\n")
    pipeline = Repository().get_pipeline_by_name("P")
    assert pipeline.extra == {"owner": "ml-team"}
    assert yaml.safe_load(pipeline.save().read_text())["owner"] == "ml-team"


def test_names_and_not_found(repo):
    build_history(repo, 1)
    _trainer_pipeline(repo, name="one").save()
    _trainer_pipeline(repo, name="two").save()
    repository = Repository(repo.path / "trainers" / "my_awesome_trainer")  # found from a sub-directory
    assert repository.root == repo.path.resolve()
    assert repository.get_pipeline_names() == ["one", "two"]
    with pytest.raises(PipelineNotFoundError) as info:
        repository.get_pipeline_by_name("three")
    assert info.value.names == ["one", "two"] and "'one', 'two'" in str(info.value)


@pytest.mark.parametrize("text, key", [
    ("- a\n- b\n", "top level"),
    ("name: X\nsteps: {}\n", "'version'"),
    ("version: '2'\nname: X\nsteps: {}\n", "'version'"),
    ("version: '1'\nname: ''\nsteps: {}\n", "'name'"),
    ("version: '1'\nname: X\nsteps: []\n", "'steps'"),
    ("version: '1'\nname: X\nsteps:\n  t: 3\n", "steps.t"),
    ("version: '1'\nname: X\nsteps:\n  t: {args: {}}\n", "steps.t.source"),
    ("version: '1'\nname: X\nsteps:\n  t: {source: 'bad source'}\n", "steps.t.source"),
    ("version: '1'\nname: X\nsteps:\n  t: {source: a.B, args: [1]}\n", "steps.t.args"),
    ("version: '1'\nname: X\nsteps: {t: {source: a.B}}\nx: !!python/object/apply:os.system ['touch pwned']\n",
     "not valid YAML"),
    ("version: '1'\nname: [unclosed\n", "not valid YAML"),
])
def test_schema_errors_name_the_file_and_key(repo, text, key):
    repo.write("pipelines/x.yaml", text)
    with pytest.raises(ConfigError) as info:
        Repository().get_pipeline_by_name("X")
    assert "x.yaml" in str(info.value) and key in str(info.value)
    assert not (repo.path / "pwned").exists()


def test_unreadable_files_elsewhere_only_warn(repo):
    build_history(repo, 1)
    _trainer_pipeline(repo, name="good").save()
    repo.write("pipelines/broken.yaml", "\x00\x01 not yaml: [")
    with pytest.warns(UserWarning, match="broken.yaml"):
        assert "training" in Repository().get_pipeline_by_name("good").steps


def test_args_that_do_not_fit_the_class(repo):
    shas = build_history(repo, 1)
    repo.write("pipelines/p.yaml", f"version: '1'\nname: P\nsteps:\n  t:\n    source: {SOURCE}@{shas[0]}\n"
                                   "    args: {unknown_arg: 1}\n")
    with pytest.raises(ConfigError, match="steps.t.args"):
        Repository().get_pipeline_by_name("P")


def test_dirty_step_is_saved_unpinned_and_loads_the_working_version(repo):
    build_history(repo, 1)
    repo.write("trainers/my_awesome_trainer/notes.py", "")
    with pytest.warns(UnpinnedSourceWarning, match="notes.py"):
        path = _trainer_pipeline(repo, name="dirty").save()
    assert yaml.safe_load(path.read_text())["steps"]["training"]["source"] == SOURCE
    with pytest.warns(UnpinnedSourceWarning, match="not pinned"):
        trainer = Repository().get_pipeline_by_name("dirty").steps["training"]
    assert trainer.version() == (0, 0)


def test_run_saves_and_threads_outputs(repo):
    repo.write("steps/__init__.py", "")
    repo.write("steps/math.py", "from zgit import BaseStep\nclass Add(BaseStep):\n"
                                "    def __init__(self, n=1):\n        self.n = n\n"
                                "    def run(self, data):\n        return (data or 0) + self.n\n")
    repo.commit()
    sys.path.insert(0, str(repo.path))
    from steps.math import Add

    pipeline = Pipeline("adder")
    pipeline.add_step("one", Add(n=1))
    pipeline.add_step("two", Add(n=10))
    assert pipeline.run(5) == {"one": 6, "two": 16}
    assert (repo.path / "pipelines" / "adder.yaml").exists()
    with pytest.raises(ValueError, match="already has a step"):
        pipeline.add_step("one", Add())


def test_repository_discovery_and_init(tmp_path, repo):
    with pytest.raises(NotARepositoryError, match="git init"):
        Repository(tmp_path)
    created = Repository.init(repo.path)
    assert (repo.path / ".zgit" / "config.yaml").is_file() and created.pipelines_dir.is_dir()
    assert created.config.strategy == "checkout" and created.config.source_root == ""
