"""Synthetic cohorts in the real UCSC Xena layouts (tests, examples, benchmarks)."""

from ._synthetic import SyntheticCohort, synthetic_cohort

__all__ = ["SyntheticCohort", "synthetic_cohort"]
