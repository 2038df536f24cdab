"""zgit's built-in steps: small, dependency-free (pure Python) and deterministic.

They are pinned by zgit's own version (``zgit.steps.split.RandomSplit@zgit_0.1.0``), so a
stored pipeline that uses them says which zgit it ran with.

Data-passing convention
-----------------------
Every step's ``run(data)`` takes the previous step's output and returns a new *bundle*
(the input is never modified).  A bundle is a plain ``dict``:

``rows``
    all rows, before splitting.  A *row* is a ``dict`` of column name -> number.
``splits``
    the names of the row sets, in order (e.g. ``['train', 'eval']``); each name is also a
    key holding that set's rows (``bundle['train']``, ``bundle['eval']``).
``features``
    the feature columns (a list of names); ``label`` the column to predict.
``preprocessing``
    what the preprocessing step learned (e.g. means and standard deviations).
``model``
    the trained model (a :class:`zgit.steps.trainer.LinearModel`: ``predict(row)``).
``metrics``
    ``{split: {metric: value}}`` written by the evaluator.

A step given a bare list of rows treats it as ``{'rows': rows}``.  Keys a step does not
know are passed on untouched, so user steps can add their own.

Modules: :mod:`~zgit.steps.data` (synthetic datasets), :mod:`~zgit.steps.split`,
:mod:`~zgit.steps.preprocessing`, :mod:`~zgit.steps.trainer`, :mod:`~zgit.steps.evaluator`.
"""

from zgit.steps.data import SyntheticData, make_classification, make_regression
from zgit.steps.evaluator import Accuracy, Evaluator, MeanSquaredError
from zgit.steps.preprocessing import StandardScaler
from zgit.steps.split import RandomSplit
from zgit.steps.trainer import LeastSquaresTrainer, LinearModel

__all__ = [
    "Accuracy",
    "Evaluator",
    "LeastSquaresTrainer",
    "LinearModel",
    "MeanSquaredError",
    "RandomSplit",
    "StandardScaler",
    "SyntheticData",
    "make_classification",
    "make_regression",
]
