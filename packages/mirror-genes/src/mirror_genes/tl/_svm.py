"""The exact linear-SVM dual solver (moved to :mod:`mirror_genes._rfe._svm`; re-exported)."""

from .._rfe._svm import (
    DualSolution,
    fit_linear_svc,
    kkt_violation,
    ovr_targets,
    refine_dual,
    solve_dual,
)

__all__ = ["DualSolution", "fit_linear_svc", "kkt_violation", "ovr_targets", "refine_dual",
           "solve_dual"]
