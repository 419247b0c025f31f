"""What every baseline returns for one outer fold: held-out predictions plus how it got there."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import constants as C

SUBTYPING = "subtyping"
SURVIVAL = "survival"
TASKS = (SUBTYPING, SURVIVAL)
PROTOCOL_SUPERVISED = "supervised"
# the ``modalities`` column of predictions tables, spelled as mirror_model.eval spells it
MODALITIES = {C.METHOD_ABMIL: "wsi", C.METHOD_PORPOISE: "wsi+rna", C.METHOD_LINEAR: "wsi+rna",
              C.METHOD_TANGLE: "wsi+rna"}


def survival_curve(logits) -> np.ndarray:
    """S(k) = prod_{j<=k} (1 - sigmoid(logit_j)), shape (n, K), computed in log space."""
    z = np.asarray(logits, dtype=np.float64)
    log_one_minus_h = -np.logaddexp(0.0, z)  # log(1 - sigmoid(z)) = -softplus(z)
    return np.exp(np.cumsum(log_one_minus_h, axis=1))


@dataclass
class BaselineResult:
    """Held-out predictions of one baseline on one fold.

    Attributes
    ----------
    method
        ``ABMIL``, ``PORPOISE``, ``Linear`` or ``TANGLE`` (``mirror_model.constants.METHOD_*``).
    task
        ``subtyping`` or ``survival``.
    test_idx
        Positions (into the caller's case arrays) of the held-out cases, in prediction order.
    logits
        (n_test, K): class scores (subtyping; softmax = probabilities) or hazard logits (survival).
    best_epoch
        Epoch (1-based) chosen on the inner validation split; None for closed-form models.
    curve
        One dict per epoch (``epoch``, ``train_loss``, ``val_loss``, ``val_metric``).
    params
        Hyperparameters used, including any chosen by inner cross-validation; survival runs
        also hold ``train_median_risk`` (the high/low risk-group threshold).
    """

    method: str
    task: str
    test_idx: np.ndarray
    logits: np.ndarray
    best_epoch: int | None = None
    curve: list[dict] = field(default_factory=list)
    params: dict = field(default_factory=dict)

    @property
    def prob(self) -> np.ndarray:
        """Class probabilities (subtyping) or survival curve S(k) (survival), (n_test, K)."""
        if self.task == SURVIVAL:
            return survival_curve(self.logits)
        z = self.logits - self.logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    @property
    def pred(self) -> np.ndarray:
        """Predicted class index (subtyping only)."""
        return self.logits.argmax(axis=1)

    @property
    def risk(self) -> np.ndarray:
        """Risk = -sum S(k) (survival only; higher = shorter survival), as ``mirror_model.eval`` computes it."""
        from ..eval import risk_from_logits

        return risk_from_logits(self.logits)

    def to_frame(self, case_ids=None) -> pd.DataFrame:
        """One row per held-out case, with every class probability or survival-curve value.

        Parameters
        ----------
        case_ids
            Patient ID per position of the caller's case arrays (``test_idx`` indexes it);
            written as ``C.PATIENT_ID`` when given.

        Returns
        -------
        Columns ``index``, [``patient_id``], ``method``, ``task``, then ``pred`` and
        ``prob_<k>`` (subtyping) or ``risk`` and ``surv_<k>`` (survival).
        """
        df = pd.DataFrame({"index": np.asarray(self.test_idx, dtype=np.int64)})
        if case_ids is not None:
            df[C.PATIENT_ID] = np.asarray(case_ids, dtype=object)[self.test_idx]
        df["method"], df["task"] = self.method, self.task
        prob = self.prob
        if self.task == SURVIVAL:
            df["risk"] = self.risk
            cols = {f"surv_{k}": prob[:, k] for k in range(prob.shape[1])}
        else:
            df["pred"] = self.pred
            cols = {f"prob_{k}": prob[:, k] for k in range(prob.shape[1])}
        return pd.concat([df, pd.DataFrame(cols)], axis=1)

    def to_predictions(self, patients, *, fold: int, seed: int, labels=None, classes=None, time=None,
                       event=None, protocol: str = PROTOCOL_SUPERVISED, modalities: str | None = None) -> pd.DataFrame:
        """Rows in the layout of ``mirror_model.eval`` predictions tables (``PREDICTION_COLUMNS``).

        Parameters
        ----------
        patients
            Patient ID per position of the caller's case arrays.
        fold
            Outer fold number.
        seed
            Seed of the run.
        labels
            Per-position truth: class (subtyping, by name or by index into ``classes``) or
            survival bin (survival).
        classes
            Class names of the logit columns, in order; default ``params["classes"]`` or 0..K-1.
        time
            Per-position survival time (survival).
        event
            Per-position event flag, 1 = death observed (survival).
        protocol
            Written in the ``protocol`` column.
        modalities
            Written in the ``modalities`` column; default by method (``wsi`` for ABMIL, else ``wsi+rna``).

        Returns
        -------
        One row per held-out patient; survival ``prediction`` is high/low against the
        training-fold median risk.
        """
        from ..eval._predictions import subtyping_rows, survival_rows

        te = np.asarray(self.test_idx, dtype=np.int64)
        keys = dict(method=self.method, task=self.task, protocol=protocol, fold=int(fold), seed=int(seed),
                    modalities=modalities or MODALITIES.get(self.method, "wsi+rna"))
        pats = np.asarray(patients, dtype=object)[te]
        if self.task == SURVIVAL:
            return survival_rows(keys, pats, np.asarray(labels)[te], self.risk, self.params["train_median_risk"],
                                 np.asarray(time, dtype=np.float64)[te], np.asarray(event, dtype=np.float64)[te])
        names = [str(c) for c in (classes if classes is not None
                                  else self.params.get("classes", range(self.logits.shape[1])))]
        truth = np.asarray(labels, dtype=object)[te]
        if np.issubdtype(np.asarray(labels).dtype, np.integer):
            truth = np.asarray(names, dtype=object)[truth.astype(np.int64)]
        return subtyping_rows(keys, pats, truth, np.asarray(names, dtype=object)[self.pred], self.prob, names)
