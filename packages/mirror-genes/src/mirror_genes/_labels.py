"""Class labels from phenotype tables, per cohort preset."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .cohorts import CohortPreset, Member

_COHORT_CODE = re.compile(r"\(([A-Z]{2,5})\)\s*$")  # "TCGA Lung Adenocarcinoma (LUAD)"


def _column(df: pd.DataFrame, *names: str) -> str | None:
    """First column whose name equals one of ``names`` or starts with ``name + '.'`` (GDC)."""
    for name in names:
        if name in df.columns:
            return name
    for name in names:
        for col in df.columns:
            if col.startswith(name + "."):
                return col
    return None


def member_of(df: pd.DataFrame, preset: CohortPreset) -> tuple[pd.Series, str | None]:
    """Project of each phenotype row (``""`` where unknown) and the column it came from.

    Tried in order: Xena ``_cohort`` ("... (LUAD)"), Xena ``_primary_disease``, GDC
    ``project_id`` ("TCGA-LUAD"), cBioPortal ``Oncotree Code``.
    """
    projects = {m.project for m in preset.members}
    out = pd.Series("", index=df.index, dtype=object)
    col = _column(df, "_cohort")
    if col is not None:
        codes = df[col].str.extract(_COHORT_CODE, expand=False).fillna("")
        out = codes.where(codes.isin(projects), "")
        if (out != "").any():
            return out, col
    col = _column(df, "_primary_disease")
    if col is not None:
        lookup = {m.primary_disease.lower(): m.project for m in preset.members}
        out = df[col].str.strip().str.lower().map(lookup).fillna("")
        if (out != "").any():
            return out, col
    col = _column(df, "project_id", "project.project_id")
    if col is not None:
        out = df[col].str.replace("TCGA-", "", regex=False).where(lambda s: s.isin(projects), "")
        if (out != "").any():
            return out, col
    col = _column(df, "Oncotree Code", "ONCOTREE_CODE", "oncotree_code")
    if col is not None:
        lookup = {code: m.project for m in preset.members for code in m.oncotree}
        out = df[col].map(lookup).fillna("")
        if (out != "").any():
            return out, col
    return pd.Series("", index=df.index, dtype=object), None


def assign_labels(df: pd.DataFrame, preset: CohortPreset) -> tuple[pd.Series, pd.Series, str | None]:
    """(label, member project, label source column) for each phenotype row; ``""`` = unlabelled."""
    member, member_col = member_of(df, preset)
    if not preset.multi_member:
        # one project: rows of another project (a pan-cancer table) are not ours
        only: Member = preset.members[0]
        if member_col is None:
            member = pd.Series(only.project, index=df.index, dtype=object)
        rule = preset.label_rule
        col = _column(df, *rule.columns) if rule is not None else None
        if col is None:
            return pd.Series("", index=df.index, dtype=object), member, None
        label = df[col].str.strip().map(rule.mapping).fillna("")
        label = label.where(member == only.project, "")
        return label, member, col
    return member.copy(), member, member_col


def label_categories(preset: CohortPreset, labels) -> pd.Categorical:
    return pd.Categorical(np.asarray(labels, dtype=object), categories=list(preset.classes))
