"""Synthetic paired cohorts (slides + transcriptomics) for tests, examples and the demo."""

from ._semisynthetic import SemiSyntheticSlides, semi_synthetic_slides, write_semi_synthetic
from ._synthetic import SLIDE_SUBDIR, VISIBILITY, SyntheticPairedCohort, synthetic_paired_cohort

__all__ = ["SLIDE_SUBDIR", "VISIBILITY", "SemiSyntheticSlides", "SyntheticPairedCohort", "semi_synthetic_slides",
           "synthetic_paired_cohort", "write_semi_synthetic"]
