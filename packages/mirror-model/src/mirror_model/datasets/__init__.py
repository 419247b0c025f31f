"""Synthetic paired cohorts (slides + transcriptomics) for tests, examples and the demo."""

from ._synthetic import SLIDE_SUBDIR, VISIBILITY, SyntheticPairedCohort, synthetic_paired_cohort

__all__ = ["SLIDE_SUBDIR", "VISIBILITY", "SyntheticPairedCohort", "synthetic_paired_cohort"]
