"""Array-level evaluation of frozen embeddings: linear probes, few-shot, survival, tables, figures.

Inputs are embeddings (one row per patient), per-patient labels or (time, event), patient IDs,
and patient-level folds as ``mirror_genes.splits.read_splits`` returns them. Every probe
returns an :class:`EvalResult` whose metrics are computed from its per-patient predictions.
Protocol and design choices: ``docs/evaluation.md``.
"""

from .._errors import EvaluationError
from ..constants import PREDICTIONS_CSV
from ._fewshot import draw_per_group, few_shot_probe, shot_seed
from ._metrics import subtyping_metrics, survival_metrics
from ._plots import plot_kaplan_meier, plot_probe_metrics
from ._predictions import (
    PREDICTION_COLUMNS,
    check_predictions,
    class_probabilities,
    metrics_from_predictions,
    read_predictions,
    write_predictions,
)
from ._probe import linear_probe, logreg_probe
from ._result import EvalResult, combine_results, parse_protocol, protocol_name
from ._survival import (
    assign_bins,
    concordance_index,
    discrete_hazard_nll,
    logrank_p,
    risk_from_logits,
    survival_bins,
)
from ._tables import ABLATION_METHODS, aggregate_metrics, format_cell, paper_tables, to_markdown, write_results

__all__ = [
    "ABLATION_METHODS", "PREDICTIONS_CSV", "PREDICTION_COLUMNS", "EvalResult", "EvaluationError",
    "aggregate_metrics", "assign_bins", "check_predictions", "class_probabilities", "combine_results",
    "concordance_index", "discrete_hazard_nll", "draw_per_group", "few_shot_probe", "format_cell", "linear_probe",
    "logrank_p", "logreg_probe", "metrics_from_predictions", "paper_tables", "parse_protocol",
    "plot_kaplan_meier", "plot_probe_metrics", "protocol_name", "read_predictions", "risk_from_logits",
    "shot_seed",
    "subtyping_metrics", "survival_bins", "survival_metrics", "to_markdown", "write_predictions",
    "write_results",
]
