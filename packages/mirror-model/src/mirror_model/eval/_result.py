"""What every probe returns: predictions, fold-level metrics (computed from them) and runs."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._errors import EvaluationError
from ._inputs import SUBTYPING, Cohort
from ._predictions import (
    METRIC_COLUMNS,
    PREDICTION_COLUMNS,
    RUN_KEYS,
    metrics_from_predictions,
    subtyping_rows,
    survival_rows,
)
from ._survival import assign_bins, risk_from_logits
from ._train import FitOutput

_PROTOCOL = re.compile(r"^(?P<probe>[a-z]+)(?:-(?P<shots>\d+)shot)?(?P<ref>-reference)?$")


@dataclass
class EvalResult:
    """Outputs of a probe (or several, see :func:`combine_results`).

    ``predictions``: one row per held-out patient and run (:data:`PREDICTION_COLUMNS`);
    ``metrics``: one row per run and metric, recomputed from ``predictions``;
    ``runs``: one row per fitted model (sizes, selected epoch or C, shots).
    """

    predictions: pd.DataFrame
    metrics: pd.DataFrame
    runs: pd.DataFrame


def protocol_name(probe: str = "linear", shots: int | None = None, reference: bool = False) -> str:
    """Protocol label: ``linear``, ``linear-10shot``, ``logreg``, with ``-reference`` appended
    when the epoch was chosen on the reported fold.

    Parameters
    ----------
    probe
        ``linear`` (torch probe) or ``logreg`` (scikit-learn logistic regression).
    shots
        Cases per class or survival bin, None for all training data.
    reference
        Epoch chosen on the held-out fold (the reference's protocol).

    Returns
    -------
    The label written in the ``protocol`` column.
    """
    return f"{probe}{'' if shots is None else f'-{int(shots)}shot'}{'-reference' if reference else ''}"


def parse_protocol(protocol: str) -> tuple[str, int | None, bool]:
    """Split a protocol label into its parts (inverse of :func:`protocol_name`).

    Parameters
    ----------
    protocol
        A label such as ``linear-10shot-reference``.

    Returns
    -------
    (probe, shots or None, reference).
    """
    m = _PROTOCOL.match(str(protocol))
    if not m:
        raise EvaluationError(f"protocol {protocol!r} is not of the form linear[-<k>shot][-reference]")
    return m["probe"], (int(m["shots"]) if m["shots"] else None), bool(m["ref"])


def combine_results(*results: EvalResult) -> EvalResult:
    """Stack several results (methods, protocols, tasks) into one.

    Parameters
    ----------
    results
        Results of the probes.

    Returns
    -------
    One :class:`EvalResult` with the rows of all.
    """
    if not results:
        raise EvaluationError("nothing to combine")
    return EvalResult(*(pd.concat([getattr(r, f) for r in results], ignore_index=True)
                        for f in ("predictions", "metrics", "runs")))


def output_rows(cohort: Cohort, keys: dict, va: np.ndarray, edges, out: FitOutput) -> pd.DataFrame:
    """Prediction rows of one fitted probe on its held-out rows."""
    pats = cohort.patients[va]
    if cohort.task == SUBTYPING:
        z = out.val_logits - out.val_logits.max(axis=1, keepdims=True)
        proba = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        predicted = np.asarray(cohort.classes)[out.val_logits.argmax(axis=1)]
        return subtyping_rows(keys, pats, cohort.labels[va], predicted, proba, cohort.classes)
    threshold = float(np.median(risk_from_logits(out.train_logits)))
    return survival_rows(keys, pats, assign_bins(cohort.time[va], edges), risk_from_logits(out.val_logits),
                         threshold, cohort.time[va], cohort.event[va])


def finish(rows: list[pd.DataFrame], runs: list[dict]) -> EvalResult:
    """Assemble the result; metrics come from the prediction rows (one code path)."""
    predictions = pd.concat(rows, ignore_index=True)[PREDICTION_COLUMNS]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="C-index undefined")  # already warned per fold
        metrics = metrics_from_predictions(predictions)[METRIC_COLUMNS]
    runs_df = pd.DataFrame(runs)
    return EvalResult(predictions, metrics, runs_df[RUN_KEYS + [c for c in runs_df if c not in RUN_KEYS]])
