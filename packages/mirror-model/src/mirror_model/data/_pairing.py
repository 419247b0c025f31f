"""Pairing slides with RNA samples (by sample barcode), and restricting to a split's patients.

Every slide is one item; several slides of one sample share that sample's RNA vector.
Splits are lists of patients, and a sample belongs to one patient, so the slides of a
sample (and of a patient) always fall on one side of a split.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .._errors import PairingError
from ._ids import patient_id_of
from ._rna import RnaTable
from ._slides import SlideRecord

_SHOW = 5  # IDs shown per line of the printed summary (the JSON has them all)


def _few(ids: Sequence[str]) -> str:
    head = ", ".join(ids[:_SHOW])
    return head + (f", ... (+{len(ids) - _SHOW})" if len(ids) > _SHOW else "")


@dataclass
class PairingReport:
    """What was paired, and what was dropped and why (with the IDs).

    Attributes
    ----------
    slides, samples, patients
        Sorted IDs of the matched items (slide stems, sample keys, patient barcodes).
    no_rna
        Slide stems whose sample has no RNA row.
    no_slide
        RNA sample keys that no slide matched.
    not_in_split
        Slide stems left out because their patient is not in the split.
    split
        Name of the split applied (None: the whole cohort).
    slides_only
        True when no RNA was given (nothing is dropped for lack of RNA then).
    rna_source
        File the RNA came from.
    """

    slides: list[str]
    samples: list[str]
    patients: list[str]
    no_rna: list[str] = field(default_factory=list)
    no_slide: list[str] = field(default_factory=list)
    not_in_split: list[str] = field(default_factory=list)
    split: str | None = None
    slides_only: bool = False
    rna_source: str | None = None

    def to_dict(self) -> dict:
        """JSON-safe dict (the caller saves it as ``C.PAIRING_REPORT``)."""
        return {
            "counts": {"slides": len(self.slides), "samples": len(self.samples), "patients": len(self.patients),
                       "dropped_no_rna": len(self.no_rna), "dropped_no_slide": len(self.no_slide),
                       "dropped_not_in_split": len(self.not_in_split)},
            "split": self.split, "slides_only": self.slides_only, "rna_source": self.rna_source,
            "matched": {"slides": self.slides, "samples": self.samples, "patients": self.patients},
            "dropped": {"no_rna": self.no_rna, "no_slide": self.no_slide, "not_in_split": self.not_in_split},
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON, atomically."""
        from mirror_genes.utils import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def summary(self) -> str:
        """A few human-readable lines (what the CLI prints)."""
        what = "slides only (no RNA)" if self.slides_only else f"slides + RNA ({self.rna_source})"
        where = f", split {self.split!r}" if self.split else ""
        lines = [f"paired {len(self.slides)} slides, {len(self.samples)} samples, "
                 f"{len(self.patients)} patients: {what}{where}"]
        for label, ids in (("slides without RNA", self.no_rna), ("RNA samples without a slide", self.no_slide),
                           ("slides not in the split", self.not_in_split)):
            if ids:
                lines.append(f"  dropped {len(ids)} {label}: {_few(ids)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


@dataclass(frozen=True)
class Pairing:
    """Slides matched to RNA rows: the input of :class:`~mirror_model.data.MirrorDataset`.

    Attributes
    ----------
    slides
        Matched slides, in discovery order (stem order).
    rna
        The RNA table (None: slides only).
    rna_rows
        Row of ``rna.values`` per slide (empty when slides only).
    report
        :class:`PairingReport`.
    known_patients
        Every patient seen in the slides or the RNA (matched or not): a split naming any
        other patient is an error.
    """

    slides: tuple[SlideRecord, ...]
    rna: RnaTable | None
    rna_rows: np.ndarray
    report: PairingReport
    known_patients: frozenset[str]

    def __len__(self) -> int:
        return len(self.slides)

    @property
    def patients(self) -> list[str]:
        """Sorted patients of the matched slides."""
        return sorted({s.patient_id for s in self.slides})

    def restrict(self, patients: Iterable[str], *, name: str = "split") -> Pairing:
        """Keep the slides of ``patients`` (12-character barcodes; longer IDs are cut).

        Raises
        ------
        PairingError
            The split names patients found neither in the slides nor in the RNA (a few are
            listed), or no matched slide is left.
        """
        wanted = {patient_id_of(p) for p in patients}
        unknown = sorted(wanted - self.known_patients)
        if unknown:
            raise PairingError(f"split {name!r} names {len(unknown)} patient(s) absent from the slides and the "
                               f"RNA: {_few(unknown)}")
        keep = np.asarray([s.patient_id in wanted for s in self.slides], dtype=bool)
        if not keep.any():
            raise PairingError(f"split {name!r}: none of its {len(wanted)} patients has a paired slide")
        slides = tuple(s for s, k in zip(self.slides, keep) if k)
        dropped = [s.slide_id for s, k in zip(self.slides, keep) if not k]
        rows = self.rna_rows[keep] if len(self.rna_rows) else self.rna_rows
        report = replace(self.report, **_matched(slides), not_in_split=sorted(self.report.not_in_split + dropped),
                         split=name)
        return replace(self, slides=slides, rna_rows=rows, report=report)


def _matched(slides: Sequence[SlideRecord]) -> dict:
    return {"slides": [s.slide_id for s in slides], "samples": sorted({s.sample_id for s in slides}),
            "patients": sorted({s.patient_id for s in slides})}


def pair_slides(slides: Sequence[SlideRecord], rna: RnaTable | None = None) -> Pairing:
    """Match slides to RNA samples by sample barcode (first 15 characters of the stem).

    Parameters
    ----------
    slides
        Records from :func:`~mirror_model.data.discover_slides`.
    rna
        Transcriptomics from :func:`~mirror_model.data.read_rna`; None for slides only. A
        table keyed by 12-character patient IDs pairs by patient instead.

    Returns
    -------
    Pairing, with its report; restrict it to a split with :meth:`Pairing.restrict`.

    Raises
    ------
    PairingError
        No slide matches any RNA sample (examples of both ID forms are shown).
    """
    slides = tuple(slides)
    if not slides:
        raise PairingError("no slides to pair")
    known = {s.patient_id for s in slides}
    if rna is None:
        report = PairingReport(**_matched(slides), slides_only=True)
        return Pairing(slides, None, np.zeros(0, dtype=np.int64), report, frozenset(known))
    known |= set(rna.patient_ids)
    by_key = {k: i for i, k in enumerate(rna.sample_ids)}
    key_of = (lambda s: s.patient_id) if rna.patient_level else (lambda s: s.sample_id)
    rows = np.asarray([by_key.get(key_of(s), -1) for s in slides], dtype=np.int64)
    hit = rows >= 0
    if not hit.any():
        raise PairingError(f"none of the {len(slides)} slides (e.g. {slides[0].slide_id} -> sample "
                           f"{key_of(slides[0])}) matches an RNA sample of {rna.source} (e.g. {rna.sample_ids[0]})")
    matched = tuple(s for s, h in zip(slides, hit) if h)
    used = set(rows[hit].tolist())
    report = PairingReport(**_matched(matched), no_rna=[s.slide_id for s, h in zip(slides, hit) if not h],
                           no_slide=sorted(k for i, k in enumerate(rna.sample_ids) if i not in used),
                           rna_source=rna.source)
    return Pairing(matched, rna, rows[hit], report, frozenset(known))
