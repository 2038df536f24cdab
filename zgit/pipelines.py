"""Ready-made pipeline shapes.  :class:`TrainingPipeline` is the one of the ZenML example:

.. code-block:: python

    from zgit.pipelines import TrainingPipeline
    from zgit.steps.split import RandomSplit
    from trainers.my_awesome_trainer.my_trainer_step import MyAwesomeTrainer

    training_pipeline = TrainingPipeline(name="My Awesome Pipeline")
    training_pipeline.add_split(RandomSplit(split={"train": 0.7, "eval": 0.3}))
    training_pipeline.add_trainer(MyAwesomeTrainer(epochs=20))
    training_pipeline.run(rows)
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from zgit.pipeline import BaseStep, Pipeline

#: The steps of a training pipeline, in the order they run.
TRAINING_STEPS = ("data", "split", "preprocessing", "training", "evaluation")


class TrainingPipeline(Pipeline):
    """A :class:`~zgit.pipeline.Pipeline` whose steps are named and ordered for training.

    ``add_datasource``, ``add_split``, ``add_preprocesser``, ``add_trainer`` and
    ``add_evaluator`` add the steps ``data``, ``split``, ``preprocessing``, ``training``
    and ``evaluation``; whatever order they are added in, they run (and are stored) in
    that order.  A step added with ``add_step`` under another name runs after the
    training step added last before it (or first, if none was).  The steps pass the
    bundle described in :mod:`zgit.steps` from one to the next.
    """

    def __init__(self, name: str, enable_cache: bool = True) -> None:
        super().__init__(name, enable_cache=enable_cache)
        self._ranks: Dict[str, float] = {}

    def add_step(self, name: str, step: BaseStep, enable_cache: Optional[bool] = None) -> None:
        super().add_step(name, step, enable_cache=enable_cache)
        if name in TRAINING_STEPS:
            rank = float(TRAINING_STEPS.index(name))
        else:
            known = [self._ranks[n] for n in self._ranks if n in TRAINING_STEPS]
            rank = (max(known) if known else -1.0) + 0.5
        self._ranks[name] = rank
        order = sorted(self.steps, key=lambda n: self._ranks[n])  # stable: ties keep insertion order
        self.steps = {n: self.steps[n] for n in order}

    def add_datasource(self, step: BaseStep) -> None:
        """Add the step that produces the rows (e.g. :class:`zgit.steps.data.SyntheticData`)."""
        self.add_step("data", step)

    def add_split(self, step: BaseStep) -> None:
        """Add the split step (e.g. :class:`zgit.steps.split.RandomSplit`)."""
        self.add_step("split", step)

    def add_preprocesser(self, step: BaseStep) -> None:
        """Add the preprocessing step (e.g. :class:`zgit.steps.preprocessing.StandardScaler`).

        The spelling is the original ZenML's.
        """
        self.add_step("preprocessing", step)

    add_preprocessor = add_preprocesser

    def add_trainer(self, step: BaseStep) -> None:
        """Add the trainer (e.g. :class:`zgit.steps.trainer.LeastSquaresTrainer` or your own)."""
        self.add_step("training", step)

    def add_evaluator(self, step: BaseStep) -> None:
        """Add the evaluation step (e.g. :class:`zgit.steps.evaluator.Evaluator`)."""
        self.add_step("evaluation", step)

    def run(self, data: Any = None, *, repo: Any = None, save: bool = True,
            enable_cache: Optional[bool] = None, engine: Any = None,
            strategy: Optional[str] = None) -> Dict[str, Any]:
        """Save the pipeline and run its steps in order; see :meth:`Pipeline.run`.

        Without a ``data`` step, pass the rows (a list of dicts) as ``data``.
        """
        if data is None and "data" not in self.steps:
            raise ValueError(
                f"pipeline {self.name!r} has no data step: add one with add_datasource() "
                "(e.g. zgit.steps.data.SyntheticData) or pass the rows to run()"
            )
        return super().run(data, repo=repo, save=save, enable_cache=enable_cache, engine=engine,
                           strategy=strategy)
