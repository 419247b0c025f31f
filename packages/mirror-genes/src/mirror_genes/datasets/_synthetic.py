"""Synthetic TCGA cohorts written in the real UCSC Xena file layouts.

The generator exists so that tests, examples and benchmarks can exercise the whole pipeline
(download cache layout, readers, labelling, gene selection, survival) without the licence-
or size-gated real files. Everything it writes is invented: patients, barcodes, expression
values, clinical data, survival, Ensembl/transcript IDs, genome positions and the Cancer
Gene Census rows. Real gene symbols (``CDH1``, ``NKX2-1``, ...) are used only as names; the
effects planted on them are chosen for testing and must not be read as biology.
"""

from __future__ import annotations

import csv
import gzip as _gzip
import io
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._atomic import atomic_path
from .._errors import CohortError
from ..cohorts import GDC_PROBEMAP, HUBS, TOIL_DATASETS, CohortPreset, Member, get_preset

# Gene IDs, genome positions and transcript structure do not depend on ``seed``: the same
# symbol always gets the same Ensembl ID, so files of several runs (and the CGC) agree.
_LAYOUT_SEED = 0x5EED_C0DE
_GDC_SCALE = 0.35  # RSEM normalised count -> TPM (linear), before log2(x + 1)
_TOIL_SCALE = 0.06  # RSEM normalised count -> FPKM (linear), before log2(x + 0.001)
_TOIL_FLOOR = 0.001

_TSV_SURVIVAL_COLUMNS = ("sample", "_PATIENT", "OS", "OS.time", "DSS", "DSS.time", "DFI",
                         "DFI.time", "PFI", "PFI.time", "Redaction")
CGC_HEADER = ("Gene Symbol", "Name", "Entrez GeneId", "Genome Location", "Tier", "Hallmark",
              "Chr Band", "Somatic", "Germline", "Tumour Types(Somatic)",
              "Tumour Types(Germline)", "Cancer Syndrome", "Tissue Type", "Molecular Genetics",
              "Role in Cancer", "Mutation Types", "Translocation Partner", "Other Germline Mut",
              "Other Syndrome", "Synonyms")

# --------------------------------------------------------------------------------------
# Per-project facts of the layouts. Histology rows: (TCGA-hub ``histological_type``,
# GDC ``primary_diagnosis.diagnoses``, share within the project, class for single-member
# presets or None = unlabelled).
# --------------------------------------------------------------------------------------
_PROJECTS: dict[str, dict] = {
    "BRCA": {
        "cohort": "TCGA Breast Cancer (BRCA)", "site": "Breast", "male": 0.01,
        "disease_type": "Ductal and Lobular Neoplasms", "organ": "Breast, NOS",
        "histology": (
            ("Infiltrating Ductal Carcinoma", "Infiltrating duct carcinoma, NOS", 0.80, "IDC"),
            ("Infiltrating Lobular Carcinoma", "Lobular carcinoma, NOS", 0.17, "ILC"),
            ("Other, specify", "Infiltrating duct mixed with other types of carcinoma", 0.014,
             None),
            ("Mixed Histology (please specify)", "Infiltrating duct and lobular carcinoma",
             0.007, None),
            ("Mucinous Carcinoma", "Mucinous adenocarcinoma", 0.004, None),
            ("Metaplastic Carcinoma", "Metaplastic carcinoma, NOS", 0.002, None),
            ("", "", 0.003, None),
        ),
    },
    "LUAD": {
        "cohort": "TCGA Lung Adenocarcinoma (LUAD)", "site": "Lung", "male": 0.46,
        "disease_type": "Adenomas and Adenocarcinomas", "organ": "Upper lobe, lung",
        "histology": (
            ("Lung Adenocarcinoma- Not Otherwise Specified (NOS)", "Adenocarcinoma, NOS",
             0.62, None),
            ("Lung Adenocarcinoma Mixed Subtype", "Adenocarcinoma with mixed subtypes", 0.2,
             None),
            ("Lung Papillary Adenocarcinoma", "Papillary adenocarcinoma, NOS", 0.05, None),
            ("Lung Acinar Adenocarcinoma", "Acinar cell carcinoma", 0.05, None),
            ("Lung Bronchioloalveolar Carcinoma Nonmucinous",
             "Bronchiolo-alveolar carcinoma, non-mucinous", 0.05, None),
            ("", "", 0.03, None),
        ),
    },
    "LUSC": {
        "cohort": "TCGA Lung Squamous Cell Carcinoma (LUSC)", "site": "Lung", "male": 0.74,
        "disease_type": "Squamous Cell Neoplasms", "organ": "Lower lobe, lung",
        "histology": (
            ("Lung Squamous Cell Carcinoma- Not Otherwise Specified (NOS)",
             "Squamous cell carcinoma, NOS", 0.92, None),
            ("Lung Basaloid Squamous Cell Carcinoma", "Basaloid squamous cell carcinoma", 0.04,
             None),
            ("Lung Papillary Squamous Cell Carcinoma", "Papillary squamous cell carcinoma",
             0.04, None),
        ),
    },
    "KIRC": {
        "cohort": "TCGA Kidney Clear Cell Carcinoma (KIRC)", "site": "Kidney", "male": 0.65,
        "disease_type": "Adenomas and Adenocarcinomas", "organ": "Kidney, NOS",
        "histology": (("Kidney Clear Cell Renal Carcinoma", "Clear cell adenocarcinoma, NOS",
                       1.0, None),),
    },
    "KIRP": {
        "cohort": "TCGA Kidney Papillary Cell Carcinoma (KIRP)", "site": "Kidney",
        "male": 0.74, "disease_type": "Adenomas and Adenocarcinomas", "organ": "Kidney, NOS",
        "histology": (("Kidney Papillary Renal Cell Carcinoma",
                       "Papillary adenocarcinoma, NOS", 1.0, None),),
    },
    "KICH": {
        "cohort": "TCGA Kidney Chromophobe (KICH)", "site": "Kidney", "male": 0.5,
        "disease_type": "Adenomas and Adenocarcinomas", "organ": "Kidney, NOS",
        "histology": (("Kidney Chromophobe", "Renal cell carcinoma, chromophobe type", 1.0,
                       None),),
    },
    "COAD": {
        "cohort": "TCGA Colon Cancer (COAD)", "site": "Colon", "male": 0.53,
        "disease_type": "Adenomas and Adenocarcinomas", "organ": "Sigmoid colon",
        "histology": (
            ("Colon Adenocarcinoma", "Adenocarcinoma, NOS", 0.85, None),
            ("Colon Mucinous Adenocarcinoma", "Mucinous adenocarcinoma", 0.13, None),
            ("", "", 0.02, None),
        ),
    },
    "READ": {
        "cohort": "TCGA Rectal Cancer (READ)", "site": "Rectum", "male": 0.55,
        "disease_type": "Adenomas and Adenocarcinomas", "organ": "Rectum, NOS",
        "histology": (
            ("Rectal Adenocarcinoma", "Adenocarcinoma, NOS", 0.9, None),
            ("Rectal Mucinous Adenocarcinoma", "Mucinous adenocarcinoma", 0.1, None),
        ),
    },
}

# Share of patients per member (multi-member presets), like the real cohorts.
_MEMBER_SHARES = {"nsclc": (0.5, 0.5), "rcc": (0.55, 0.30, 0.15), "coadread": (0.7, 0.3)}

# Real symbols planted as class markers where they fit (the effects are invented).
# brca: CDH1 is listed for IDC because it is strongly *lower* in ILC (lobular loss of
# E-cadherin), i.e. up in IDC relative to ILC.
_REAL_MARKERS: dict[str, dict[str, tuple[str, ...]]] = {
    "brca": {"IDC": ("CDH1", "KRT5"), "ILC": ("ESR1", "GATA3")},
    "nsclc": {"LUAD": ("NKX2-1", "NAPSA", "SFTPC"), "LUSC": ("TP63", "KRT5", "SOX2", "DSG3")},
    "rcc": {"KIRC": ("CA9", "NDUFA4L2"), "KIRP": ("AMACR",), "KICH": ("KIT", "FOXI1")},
    "coadread": {"COAD": ("SATB2",), "READ": ("HOXB13", "PRAC1")},
}
_HOUSEKEEPING = ("ACTB", "GAPDH")
# Class signal (log2 shift at full programme intensity) and how much the classes overlap:
# tuned so that, on the default brca cohort, a probe on all genes reaches a held-out
# balanced accuracy of about 0.8-0.9 and a good panel does visibly better (docs/selection.md).
_POOL_MARKER_SHIFT = (1.0, 2.0)
_REAL_MARKER_SHIFT = (1.2, 2.0)
_CDH1_SHIFT = 3.0
_CLASS_OVERLAP = {"brca": 0.35, "nsclc": 0.2, "rcc": 0.2, "coadread": 0.35}
_TISSUE_SPECIFIC = ("ESR1", "KRT5", "TP63", "NKX2-1", "NAPSA", "SFTPC", "DSG3", "CA9",
                    "NDUFA4L2", "FOXI1", "HOXB13", "PRAC1", "SATB2", "CDX2")
_REAL_EXTRA = ("CDH1", "ESR1", "GATA3", "KRT5", "TP63", "NKX2-1", "NAPSA", "SFTPC", "SOX2",
               "DSG3", "CA9", "NDUFA4L2", "AMACR", "KIT", "FOXI1", "HOXB13", "PRAC1", "SATB2",
               "CDX2", *_HOUSEKEEPING)

# --------------------------------------------------------------------------------------
# Cancer Gene Census rows. THE ANNOTATIONS ARE INVENTED for testing (tumour types, tiers,
# roles, synonyms, IDs, positions); they are not COSMIC data and must not be used as such.
# Columns: symbol, tier, somatic tumour types, germline tumour types, role, mutation types,
# present in the expression files, alias used by the expression files instead of the symbol,
# extra (old) aliases listed in Synonyms.
# --------------------------------------------------------------------------------------
_CGC_ROWS: tuple[tuple, ...] = (
    ("CDH1", 1, "lobular breast, gastric", "gastric, lobular breast", "TSG", "Mis, N, F, S",
     True, None, "CDHE, ECAD, UVO"),
    ("GATA3", 1, "breast, renal", "", "oncogene, TSG", "F, N, Mis", True, None, "HDR"),
    ("MAP3K1", 1, "luminal A breast", "", "TSG", "Mis, N, F", True, None, "MEKK1"),
    ("PIK3CA", 1, "colorectal, gastric, glioblastoma, breast", "", "oncogene", "Mis", True,
     None, "PI3K"),
    ("ERBB2", 1, "breast, ovarian, other tumour types, NSCLC, gastric", "", "oncogene",
     "A, Mis, O", True, None, "HER2, NEU"),
    ("ESR1", 1, "breast, endometrial", "", "oncogene, fusion", "T, Mis", True, None,
     "ESR, NR3A1"),
    ("TP53", 1, "breast, colorectal, lung, sarcoma, adrenocortical, glioma, multiple other "
     "tumour types", "breast, sarcoma, adrenocortical carcinoma, glioma, multiple other tumour "
     "types", "oncogene, TSG, fusion", "Mis, N, F", True, None, "P53"),
    ("SYNC01", 2, "breast carcinoma", "", "oncogene", "Mis", True, None, "SYNC1A"),
    ("SYNC02", 1, "secretory breast, AML", "", "oncogene, fusion", "T", False, None, "SYNC2B"),
    ("SYNC03", 2, "phyllodes tumour of the breast", "", "TSG", "Mis, N", False, None, ""),
    ("SYNC04", 2, "breast, ovarian", "breast, ovarian, pancreatic", "TSG", "D, Mis, N, F, S",
     True, "C21orf199", "KIAA0117"),
    ("EGFR", 1, "glioma, NSCLC", "familial lung cancer", "oncogene", "A, O, Mis", True, None,
     "ERBB1, HER1"),
    ("KRAS", 1, "pancreatic, colorectal, lung, thyroid, AML, other tumour types", "",
     "oncogene", "Mis", True, None, "KRAS2"),
    ("STK11", 1, "NSCLC, pancreatic", "jejunal harmartoma, ovarian, testicular, pancreatic",
     "TSG", "D, Mis, N, F", True, None, "LKB1"),
    ("KEAP1", 1, "NSCLC", "", "TSG", "Mis, N", True, None, "INRF2"),
    ("NKX2-1", 1, "NSCLC, thyroid", "", "oncogene", "A", True, None, "TITF1, TTF1"),
    ("SOX2", 1, "NSCLC, oesophageal squamous carcinoma", "", "oncogene", "A", True, None, ""),
    ("TP63", 2, "lung SCC, B-NHL", "", "oncogene, fusion", "A, T", True, None, "TP73L"),
    ("SYNC05", 2, "lung adenocarcinoma", "", "oncogene, fusion", "T", False, None, ""),
    ("SYNC06", 2, "lung SCC, head and neck squamous cell carcinoma", "", "TSG", "Mis, N", True,
     "KIAA9901", "SYNC6L"),
    ("SYNC07", 1, "non small cell lung cancer, melanoma", "", "oncogene", "Mis", False, None,
     ""),
    ("SYNC08", 2, "lung cancer", "", "TSG", "D", True, None, ""),
    ("VHL", 1, "renal, haemangioma, phaeochromocytoma", "renal, haemangioma, "
     "phaeochromocytoma", "TSG", "Mis, N, F", True, None, "VHL1"),
    ("PBRM1", 1, "clear cell renal carcinoma, breast", "", "TSG", "Mis, N, F", True, None,
     "BAF180"),
    ("SYNC09", 2, "clear cell renal carcinoma", "", "TSG", "N, F", False, None, ""),
    ("SYNC10", 2, "papillary renal, head and neck squamous cell carcinoma", "papillary renal",
     "oncogene", "Mis", True, None, ""),
    ("SYNC11", 1, "renal cell carcinoma, alveolar soft part sarcoma", "", "oncogene, fusion",
     "T", True, None, "SYNC11X"),
    ("SYNC12", 2, "chromophobe renal carcinoma", "", "TSG", "D", False, None, ""),
    ("SYNC13", 2, "ccRCC", "", "TSG", "Mis, F", True, None, ""),
    ("APC", 1, "colorectal, pancreatic, desmoid, hepatoblastoma, glioma, other CNS",
     "colorectal, pancreatic, desmoid, hepatoblastoma, glioma, other CNS", "TSG",
     "D, Mis, N, F, S", True, None, "DP2.5"),
    ("SMAD4", 1, "colorectal, pancreatic, small intestine", "gastrointestinal polyps", "TSG",
     "D, Mis, N, F", True, None, "DPC4, MADH4"),
    ("SYNC14", 2, "colorectal adenocarcinoma", "", "oncogene", "A", True, None, ""),
    ("SYNC15", 2, "colon, gastric", "", "TSG", "F", False, None, ""),
    ("SYNC16", 1, "CRC, endometrial", "colorectal, endometrial", "TSG", "Mis, N, F, S", True,
     None, ""),
    ("SYNC17", 2, "rectal, anal", "", "oncogene", "Mis", False, None, ""),
    ("PTEN", 1, "glioma, prostate, endometrial", "harmartoma, glioma, prostate, endometrial",
     "TSG", "D, Mis, N, F, S", True, None, "MMAC1"),
)
# Tumour types of the remaining, cohort-unrelated rows (none holds a preset keyword).
_OTHER_TYPES = ("AML", "AML, MDS", "B-NHL, CLL", "melanoma", "glioblastoma, medulloblastoma",
                "MM", "T-ALL", "prostate", "Ewing sarcoma", "hepatocellular carcinoma",
                "neuroblastoma", "ovarian", "endometrial", "thyroid, papillary thyroid",
                "bladder", "MDS, CMML", "gastric", "pancreatic", "osteosarcoma",
                "uveal melanoma", "head and neck squamous cell carcinoma", "DLBCL", "ALL",
                "salivary adenoma", "chondrosarcoma")
_ROLES = ("oncogene", "TSG", "oncogene, fusion", "TSG, fusion", "fusion")
_MUTS = ("Mis", "N, F", "T", "A", "Mis, T")
_LEUKAEMIA = ("AML", "MDS", "CLL", "T-ALL", "ALL", "MM", "B-NHL", "DLBCL", "CMML")

_CHROMS = tuple(f"chr{c}" for c in (*range(1, 23), "X", "Y"))
_CHROM_MB = (248, 242, 198, 190, 181, 171, 159, 145, 138, 134, 135, 133, 114, 107, 102, 90,
             83, 80, 59, 64, 47, 51, 156, 57)


@dataclass(frozen=True)
class SyntheticCohort:
    """Paths and planted ground truth of a cohort written by :func:`synthetic_cohort`.

    Attributes
    ----------
    cohort
        Preset name (``brca``, ``nsclc``, ``rcc``, ``coadread``).
    hub
        Layout written: ``tcga``, ``gdc`` or ``toil``.
    expression
        Expression matrices, one per preset member (toil: one pan-cohort matrix).
    phenotype
        Phenotype tables, one per preset member, in member order.
    survival
        Survival tables, one per preset member, in member order.
    probemap
        Feature-ID probemap (gdc: genes, toil: transcripts); None for the tcga hub.
    cgc
        Cancer Gene Census CSV (invented rows).
    marker_genes
        Class -> feature IDs (as in the expression files: symbols, versioned Ensembl gene
        IDs or versioned transcript IDs) up-regulated in that class.
    prognostic_genes
        Feature IDs whose standardised expression drives the hazard.
    expected_counts
        Class -> labelled primary-tumour patients with expression after the default ingest
        filters (sample type 01, one sample per patient, unlabelled dropped).
    """

    cohort: str
    hub: str
    expression: tuple[Path, ...]
    phenotype: tuple[Path, ...]
    survival: tuple[Path, ...]
    probemap: Path | None
    cgc: Path
    marker_genes: dict[str, tuple[str, ...]]
    prognostic_genes: tuple[str, ...]
    expected_counts: dict[str, int]

    def files(self) -> tuple[Path, ...]:
        """Every file written, expression first and the CGC last."""
        extra = (self.probemap,) if self.probemap is not None else ()
        return (*self.expression, *self.phenotype, *self.survival, *extra, self.cgc)


# --------------------------------------------------------------------------------------
# Writing helpers
# --------------------------------------------------------------------------------------
def _write(path: Path, text: str, compress: bool) -> Path:
    """Write ``text`` atomically; gzip without a name or time stamp (byte-reproducible)."""
    data = text.encode("utf-8")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as raw:
            if compress:
                with _gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6,
                                    mtime=0) as gz:
                    gz.write(data)
            else:
                raw.write(data)
    return path


def _tsv(df: pd.DataFrame) -> str:
    return df.to_csv(sep="\t", index=False, lineterminator="\n")


def _matrix_text(header_cell: str, features, samples, values: np.ndarray) -> str:
    """Features x samples matrix, 4 decimals, ``NA`` for missing cells."""
    values = np.round(values, 4) + 0.0  # no "-0.0000"
    fmt = "\t".join(["%.4f"] * values.shape[1])
    lines = [header_cell + "\t" + "\t".join(samples)]
    lines += [f"{name}\t" + (fmt % tuple(row)).replace("nan", "NA")
              for name, row in zip(features, values.tolist(), strict=True)]
    return "\n".join(lines) + "\n"


def _gz_name(name: str, compress: bool) -> str:
    return name if compress else name.removesuffix(".gz")


def _largest_remainder(shares, n: int) -> np.ndarray:
    shares = np.asarray(shares, dtype=float)
    raw = shares / shares.sum() * n
    counts = np.floor(raw).astype(int)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


# --------------------------------------------------------------------------------------
# Genes
# --------------------------------------------------------------------------------------
def _cgc_table() -> pd.DataFrame:
    rows = [dict(zip(("symbol", "tier", "somatic", "germline", "role", "mutations", "present",
                      "alias", "old_aliases"), r, strict=True)) for r in _CGC_ROWS]
    for i, types in enumerate(_OTHER_TYPES):
        role = _ROLES[i % len(_ROLES)]
        rows.append({"symbol": f"SYNC{18 + i:02d}", "tier": 2 if i % 3 == 0 else 1,
                     "somatic": types, "germline": types if i % 7 == 3 else "", "role": role,
                     "mutations": "T" if "fusion" in role else _MUTS[i % len(_MUTS)],
                     "present": i % 2 == 0, "alias": None,
                     "old_aliases": f"SYNC{18 + i}P" if i % 4 == 1 else ""})
    return pd.DataFrame(rows)


def _gene_universe(n_genes: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All genes known to the synthetic annotation (seed independent) and the CGC table.

    Columns: ``symbol`` (official), ``feature_symbol`` (name used by expression files),
    ``kind`` (real / cgc / pool), ``in_expr``, ``ensembl`` (unversioned), ``version``,
    ``chrom``, ``start``, ``end``, ``strand``, ``n_tx``.
    """
    cgc = _cgc_table()
    fixed = list(dict.fromkeys([*_REAL_EXTRA, *cgc["symbol"]]))
    cgc_by_symbol = cgc.set_index("symbol")
    n_fixed_present = sum(1 for s in fixed if s not in cgc_by_symbol.index
                          or cgc_by_symbol.loc[s, "present"])
    n_pool = n_genes - n_fixed_present
    width = max(4, len(str(n_pool)))
    pool = [f"SYNG{i:0{width}d}" for i in range(1, n_pool + 1)]
    symbols = fixed + pool
    n = len(symbols)
    idx = np.arange(n)
    # per-gene draws in fixed chunks, so a gene's layout does not depend on n_genes
    n_chunks = -(-n // 4096)
    draws = np.vstack([np.random.default_rng([_LAYOUT_SEED, k]).random((4096, 6))
                       for k in range(max(n_chunks, 1))])[:n]
    weights = np.asarray(_CHROM_MB, dtype=float)
    chrom_idx = np.searchsorted(np.cumsum(weights) / weights.sum(), draws[:, 0], side="right")
    chrom_idx = np.minimum(chrom_idx, len(_CHROMS) - 1)
    length = (np.exp(7.5 + 2.5 * draws[:, 1])).astype(np.int64)  # ~2 kb .. 220 kb
    chrom_len = np.asarray(_CHROM_MB, dtype=np.int64)[chrom_idx] * 1_000_000
    start = (10_000 + draws[:, 2] * (chrom_len - length - 20_000)).astype(np.int64)
    alias = dict(zip(cgc["symbol"], cgc["alias"], strict=True))
    present = dict(zip(cgc["symbol"], cgc["present"], strict=True))
    genes = pd.DataFrame({
        "symbol": symbols,
        "feature_symbol": [alias.get(s) or s for s in symbols],
        "kind": ["real" if s in _REAL_EXTRA else "cgc" if s in present else "pool"
                 for s in symbols],
        "in_expr": [bool(present.get(s, True)) for s in symbols],
        # bijection of the index onto an unused ID range: unique, stable, clearly invented
        "ensembl": [f"ENSG{900000 + (i * 7919 + 13) % 100000:011d}" for i in idx],
        "version": 1 + (draws[:, 3] * 20).astype(int),
        "chrom": [_CHROMS[c] for c in chrom_idx],
        "start": start,
        "end": start + length,
        "strand": np.where(draws[:, 4] < 0.5, "+", "-"),
        "n_tx": 2 + (draws[:, 5] * 3).astype(int),
    })
    return genes, cgc


def _chr_band(chrom: str, start: int) -> str:
    """An invented cytoband consistent with the position (p arm on the first ~40 %)."""
    frac = start / (_CHROM_MB[_CHROMS.index(chrom)] * 1_000_000)
    arm, within = ("p", frac / 0.4) if frac < 0.4 else ("q", (frac - 0.4) / 0.6)
    band = 11 + min(int(within * 25), 24)
    return f"{chrom.removeprefix('chr')}{arm}{band}.{1 + start % 3}"


def _cgc_text(genes: pd.DataFrame, cgc: pd.DataFrame) -> str:
    by_symbol = genes.set_index("symbol")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(CGC_HEADER)
    for i, row in enumerate(cgc.itertuples(index=False)):
        g = by_symbol.loc[row.symbol]
        chrom_no = g.chrom.removeprefix("chr")
        role = row.role
        name = (f"{row.symbol} tumour suppressor" if "TSG" in role
                else f"{row.symbol} proto-oncogene" if "oncogene" in role
                else f"{row.symbol} fusion partner")
        liquid = any(t in _LEUKAEMIA for t in row.somatic.split(", "))
        aliases = [a for a in (row.alias or "", *row.old_aliases.split(", ")) if a]
        accession = f"Q{i % 10}Z{i:02d}{(i * 7) % 10}"  # UniProt-like, invented
        synonyms = ",".join([*aliases, accession, g.ensembl])
        partner = ""
        if "fusion" in role:
            n_other = len(_OTHER_TYPES)
            partner = ", ".join(sorted({f"SYNC{18 + (i * 7) % n_other:02d}",
                                        f"SYNC{18 + (i * 11) % n_other:02d}"} - {row.symbol}))
        writer.writerow([
            row.symbol, name, 900000 + i, f"{chrom_no}:{g.start}-{g.end}", row.tier,
            "Yes" if row.tier == 1 and i % 2 == 0 else "", _chr_band(g.chrom, int(g.start)), "yes",
            "yes" if row.germline else "", row.somatic, row.germline,
            f"familial {row.germline.split(', ')[0]} syndrome" if row.germline else "",
            ("L" if liquid else "E") + (", M" if i % 9 == 4 else ""),
            "Rec" if "TSG" in role else "Dom", role, row.mutations, partner,
            "yes" if i % 11 == 5 else "no", "", synonyms,
        ])
    return out.getvalue()


# --------------------------------------------------------------------------------------
# Patients and samples
# --------------------------------------------------------------------------------------
def _barcodes(rng: np.random.Generator, members: list[str], n_per_member: dict[str, int],
              used: set[str]) -> dict[str, list[str]]:
    alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
    out: dict[str, list[str]] = {}
    for m in members:
        n_sites = max(3, n_per_member[m] // 12)
        sites: list[str] = []
        while len(sites) < n_sites:
            s = "".join(rng.choice(alphabet, 2))
            if s not in used:
                used.add(s)
                sites.append(s)
        ids: list[str] = []
        while len(ids) < n_per_member[m]:
            site = sites[int(rng.integers(len(sites)))]
            pid = f"TCGA-{site}-{''.join(rng.choice(alphabet, 4))}"
            if pid not in used:
                used.add(pid)
                ids.append(pid)
        out[m] = ids
    return out


def _patients(preset: CohortPreset, n_patients: int, rng: np.random.Generator) -> pd.DataFrame:
    projects = [m.project for m in preset.members]
    shares = _MEMBER_SHARES.get(preset.name, (1.0,) * len(projects))
    n_member = dict(zip(projects, _largest_remainder(shares, n_patients), strict=True))
    n_orphan = max(2, round(0.015 * n_patients))
    n_foreign = max(3, round(0.02 * n_patients))
    orphan_member = rng.choice(len(projects), n_orphan, p=np.asarray(shares) / sum(shares))
    n_all = {p: n_member[p] + int((orphan_member == j).sum()) for j, p in enumerate(projects)}
    n_all["_OTHER"] = n_foreign
    used: set[str] = set()
    ids = _barcodes(rng, [*projects, "_OTHER"], n_all, used)
    frames = []
    for p in projects:
        hist = _PROJECTS[p]["histology"]
        n_core = n_member[p]
        counts = _largest_remainder([h[2] for h in hist], n_core)
        hist_idx = rng.permutation(np.repeat(np.arange(len(hist)), counts))
        n_orph = n_all[p] - n_core
        hist_idx = np.concatenate([hist_idx, rng.choice(len(hist), n_orph,
                                                        p=[h[2] for h in hist])])
        if preset.multi_member:
            label = np.full(len(hist_idx), p, dtype=object)
        else:
            label = np.asarray([hist[h][3] or "" for h in hist_idx], dtype=object)
        frames.append(pd.DataFrame({
            "patient": ids[p], "member": p, "hist": hist_idx, "label": label,
            "role": ["core"] * n_core + ["orphan"] * n_orph,
        }))
    frames.append(pd.DataFrame({"patient": ids["_OTHER"], "member": "", "hist": -1, "label": "",
                                "role": "foreign"}))
    pats = pd.concat(frames, ignore_index=True)
    # expression profile: the class; unlabelled single-member patients look mostly like IDC
    classes = list(preset.classes)
    cls = np.asarray([classes.index(lab) if lab in classes else -1 for lab in pats["label"]])
    unl = np.flatnonzero(cls < 0)
    cls[unl] = rng.choice(len(classes), len(unl), p=_class_prior(preset))
    pats["expr_class"] = cls
    # phenotype rows without expression: whole patients whose RNA was never sequenced
    core = np.flatnonzero(pats["role"].to_numpy() == "core")
    n_pheno_only = max(2, round(0.02 * n_patients))
    pheno_only = rng.choice(core, n_pheno_only, replace=False)
    pats.loc[pheno_only, "role"] = "pheno_only"
    male = np.asarray([_PROJECTS[m]["male"] if m else 0.5 for m in pats["member"]])
    pats["gender"] = np.where(rng.random(len(pats)) < male, "MALE", "FEMALE")
    pats["age"] = np.clip(np.round(rng.normal(60, 12, len(pats))), 26, 90).astype(int)
    pats["stage"] = rng.choice(["Stage I", "Stage IA", "Stage IIA", "Stage IIB", "Stage IIIA",
                                "Stage IIIC", "Stage IV", ""], len(pats),
                               p=[0.12, 0.08, 0.28, 0.2, 0.12, 0.08, 0.06, 0.06])
    return pats


def _class_prior(preset: CohortPreset) -> np.ndarray:
    if preset.multi_member:
        s = np.asarray(_MEMBER_SHARES[preset.name], dtype=float)
    else:
        hist = _PROJECTS[preset.members[0].project]["histology"]
        s = np.asarray([sum(h[2] for h in hist if h[3] == c) for c in preset.classes])
    return s / s.sum()


def _samples(pats: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    role = pats["role"].to_numpy()
    for i, (pid, r) in enumerate(zip(pats["patient"], role, strict=True)):
        rows.append((pid, i, "01", "A", r))
    humans = np.flatnonzero(np.isin(role, ["core", "pheno_only"]))
    with_expr = np.flatnonzero(role == "core")
    normals = humans[rng.random(len(humans)) < 0.05]
    mets = rng.choice(with_expr, min(2, len(with_expr)), replace=False)
    dups = rng.choice(np.setdiff1d(with_expr, mets), 2, replace=False)
    for i in normals:
        rows.append((pats.at[i, "patient"], i, "11", "A", role[i]))
    for i in mets:
        rows.append((pats.at[i, "patient"], i, "06", "A", role[i]))
    for i in dups:  # a second aliquot of the primary tumour: only the GDC hub keeps both
        rows.append((pats.at[i, "patient"], i, "01", "B", role[i]))
    smp = pd.DataFrame(rows, columns=["patient", "pat_idx", "code", "vial", "role"])
    smp["sample"] = smp["patient"] + "-" + smp["code"]
    smp["gdc_sample"] = smp["sample"] + smp["vial"]
    smp["in_pheno"] = smp["role"].isin(["core", "pheno_only"])
    smp["in_expr"] = smp["role"].isin(["core", "orphan", "foreign"])
    smp["member"] = pats["member"].to_numpy()[smp["pat_idx"]]
    return smp


# --------------------------------------------------------------------------------------
# Expression (log2(RSEM norm count + 1) scale, gene level)
# --------------------------------------------------------------------------------------
def _pick_planted(g: pd.DataFrame, preset: CohortPreset, n_markers: int, n_prognostic: int,
                  rng: np.random.Generator) -> tuple[dict[str, list[int]], np.ndarray, np.ndarray]:
    """Class markers (real symbols first), prognostic genes and normal-tissue genes."""
    pos = {s: i for i, s in enumerate(g["symbol"])}
    pool = np.flatnonzero(g["kind"].to_numpy() == "pool")
    take = iter(rng.permutation(pool))
    markers: dict[str, list[int]] = {}
    for c in preset.classes:
        real = [pos[s] for s in _REAL_MARKERS[preset.name].get(c, ())][:n_markers]
        markers[c] = real + [int(next(take)) for _ in range(n_markers - len(real))]
    prognostic = np.asarray([int(next(take)) for _ in range(n_prognostic)], dtype=int)
    normal_prog = np.asarray([int(next(take)) for _ in range(min(25, len(pool) // 20))],
                             dtype=int)
    return markers, prognostic, normal_prog


def _baselines(g: pd.DataFrame, preset: CohortPreset, planted: np.ndarray,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-gene mean, noise s.d. and "low" flag: most genes 2..14, some low / off."""
    n_g = len(g)
    pos = {s: i for i, s in enumerate(g["symbol"])}
    mu = np.clip(rng.normal(8.5, 2.3, n_g), 2.0, 14.0)
    low = rng.random(n_g) < 0.14
    mu[low] = rng.uniform(0.0, 1.5, int(low.sum()))
    # tissue-specific markers of the other cohorts are barely expressed here
    own = {s for v in _REAL_MARKERS[preset.name].values() for s in v}
    for s in _TISSUE_SPECIFIC:
        if s in own:
            continue
        mu[pos[s]] = rng.uniform(0.5, 3.0)
        low[pos[s]] = False
    for s in _HOUSEKEEPING:
        mu[pos[s]] = rng.uniform(12.5, 14.0)
        low[pos[s]] = False
    low[planted] = False
    mu[planted] = rng.uniform(5.0, 10.0, len(planted))
    sd = rng.uniform(0.25, 0.9, n_g)
    sd[low] = rng.uniform(0.3, 0.8, int(low.sum()))
    return mu, sd, low


def _modules(n_s: int, low: np.ndarray, cls: np.ndarray, normal: np.ndarray,
             rng: np.random.Generator) -> np.ndarray:
    """Correlated programmes: a few latent factors, each loading on a block of genes."""
    n_g, k = len(low), 6
    module = np.where(rng.random(n_g) < 0.55, rng.integers(0, k, n_g), -1)
    load = rng.uniform(0.3, 0.9, n_g) * np.where(rng.random(n_g) < 0.8, 1.0, -1.0)
    load[module < 0] = 0.0
    load[low] *= 0.3
    factors = rng.standard_normal((n_s, k))
    factors[:, 1] += 0.3 * (cls == 0) - 0.15  # a weak class-associated programme
    factors[normal, 0] -= 1.5  # proliferation low in normal tissue
    return factors[:, np.maximum(module, 0)] * load[None, :]


def _marker_shifts(g: pd.DataFrame, preset: CohortPreset, markers: dict[str, list[int]],
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
    """log2 shift of each class marker at full programme intensity."""
    shifts = {}
    real = {s for v in _REAL_MARKERS[preset.name].values() for s in v}
    sym = g["symbol"].to_numpy()
    for c in preset.classes:
        idx = np.asarray(markers[c], dtype=int)
        shift = rng.uniform(*_POOL_MARKER_SHIFT, len(idx))
        is_real = np.isin(sym[idx], list(real))
        shift[is_real] = rng.uniform(*_REAL_MARKER_SHIFT, int(is_real.sum()))
        if preset.name == "brca" and c == "IDC":
            shift[sym[idx] == "CDH1"] = _CDH1_SHIFT  # E-cadherin lost in lobular
        shifts[c] = shift
    return shifts


def _expression_model(genes: pd.DataFrame, preset: CohortPreset, pats: pd.DataFrame,
                      smp: pd.DataFrame, n_markers: int, n_prognostic: int, overlap: float,
                      rng: np.random.Generator) -> tuple[np.ndarray, dict, np.ndarray]:
    """Latent log2 expression (samples x expressed genes), markers and prognostic genes.

    Each tumour expresses every class programme at an intensity: 1 for its own class, 0 for
    the others, plus N(0, ``overlap``) per sample and programme. Class markers move with
    their programme's intensity, so with overlap > 0 some tumours look like another class
    (as lobular and ductal carcinomas do) and no classifier reaches 100 %.
    """
    g = genes[genes["in_expr"]].reset_index(drop=True)
    n_g, n_s = len(g), len(smp)
    markers, prognostic, normal_prog = _pick_planted(g, preset, n_markers, n_prognostic, rng)
    planted = np.unique(np.concatenate(
        [np.asarray(v, dtype=int) for v in markers.values()] + [prognostic])).astype(int)
    mu, sd, low = _baselines(g, preset, planted, rng)
    cls = pats["expr_class"].to_numpy()[smp["pat_idx"].to_numpy()]
    normal = (smp["code"] == "11").to_numpy()
    x = mu[None, :] + _modules(n_s, low, cls, normal, rng)
    x += rng.standard_normal((n_s, n_g)) * sd[None, :]
    x += rng.normal(0.0, 0.12, (n_s, 1))  # per-sample technical offset

    classes = list(preset.classes)
    intensity = (cls[:, None] == np.arange(len(classes))[None, :]).astype(float)
    intensity += rng.normal(0.0, overlap, intensity.shape)
    tumour = np.flatnonzero(~normal)
    for ci, (c, shift) in enumerate(_marker_shifts(g, preset, markers, rng).items()):
        idx = np.asarray(markers[c], dtype=int)
        x[np.ix_(tumour, idx)] += intensity[tumour, ci][:, None] * shift[None, :]
    if len(normal_prog):
        x[np.ix_(np.flatnonzero(normal), normal_prog)] += rng.uniform(
            2.0, 4.0, len(normal_prog))[None, :]
    _copy_second_aliquots(x, smp, rng)
    # dropout of low genes, floor at zero
    off = low[None, :] & (rng.random((n_s, n_g)) < 0.45)
    x[off] = 0.0
    np.maximum(x, 0.0, out=x)
    x[x < 0.05] = 0.0
    return x, {c: np.asarray(v, dtype=int) for c, v in markers.items()}, prognostic


def _copy_second_aliquots(x: np.ndarray, smp: pd.DataFrame, rng: np.random.Generator) -> None:
    """A second aliquot (vial B) is a near-copy of the first."""
    for j in np.flatnonzero(smp["vial"].to_numpy() == "B"):
        first = np.flatnonzero((smp["patient"].to_numpy() == smp.at[j, "patient"])
                               & (smp["code"].to_numpy() == "01")
                               & (smp["vial"].to_numpy() == "A"))[0]
        x[j] = x[first] + rng.normal(0.0, 0.15, x.shape[1])


def _survival_model(x: np.ndarray, smp: pd.DataFrame, pats: pd.DataFrame,
                    prognostic: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Patient-level OS/DSS/DFI/PFI: Weibull baseline x exp(beta . z), random censoring."""
    n_p = len(pats)
    primary = np.full(n_p, -1)
    prim_rows = np.flatnonzero((smp["code"].to_numpy() == "01") & (smp["vial"] == "A"))
    primary[smp["pat_idx"].to_numpy()[prim_rows]] = prim_rows
    if len(prognostic):
        z = x[np.ix_(primary, prognostic)]
        z = (z - z.mean(0)) / np.where(z.std(0) > 0, z.std(0), 1.0)
        beta = rng.uniform(0.5, 1.0, len(prognostic)) * rng.choice([-1.0, 1.0], len(prognostic))
        beta *= 0.9 / np.linalg.norm(beta)
        risk = z @ beta
    else:
        risk = np.zeros(n_p)
    shape, scale = 1.3, 4200.0
    t_event = scale * (rng.exponential(1.0, n_p) * np.exp(-risk)) ** (1.0 / shape)
    t_cens = np.minimum(rng.uniform(30.0, 4000.0, n_p), rng.exponential(6000.0, n_p))
    os_time = np.maximum(np.round(np.minimum(t_event, t_cens)), 1.0)
    os_event = (t_event <= t_cens).astype(float)
    dss = np.where(os_event == 1, (rng.random(n_p) < 0.75).astype(float), 0.0)
    t_prog = 0.6 * scale * (rng.exponential(1.0, n_p) * np.exp(-risk)) ** (1.0 / shape)
    pfi = (t_prog < os_time).astype(float)
    pfi = np.maximum(pfi, os_event)
    pfi_time = np.where(t_prog < os_time, np.maximum(np.round(t_prog), 1.0), os_time)
    dfi_known = rng.random(n_p) < 0.6
    surv = pd.DataFrame({"OS": os_event, "OS.time": os_time, "DSS": dss, "DSS.time": os_time,
                         "PFI": pfi, "PFI.time": pfi_time,
                         "DFI": np.where(dfi_known, (t_prog < os_time).astype(float), np.nan),
                         "DFI.time": np.where(dfi_known, pfi_time, np.nan)})
    dss_unknown = rng.random(n_p) < 0.03
    surv.loc[dss_unknown, ["DSS", "DSS.time"]] = np.nan
    humans = np.flatnonzero(pats["role"].isin(["core", "pheno_only"]).to_numpy())
    missing = rng.choice(humans, max(1, round(0.01 * len(humans))), replace=False)
    surv.loc[missing, :] = np.nan
    surv["risk"] = risk
    return surv


def _fmt(values, decimals: int = 0) -> list[str]:
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            out.append("")
        elif decimals == 0:
            out.append(str(int(v)))
        else:
            out.append(f"{v:.{decimals}f}")
    return out


# --------------------------------------------------------------------------------------
# Phenotype / survival tables
# --------------------------------------------------------------------------------------
_SAMPLE_TYPE_NAMES = {"01": "Primary Tumor", "06": "Metastatic", "11": "Solid Tissue Normal"}


def _clinical_matrix(member: Member, rows: pd.DataFrame, pats: pd.DataFrame,
                     surv: pd.DataFrame, expr_ids: set[str], rng: np.random.Generator) -> str:
    project, primary_disease = member.project, member.primary_disease
    info = _PROJECTS[project]
    p = pats.loc[rows["pat_idx"]].reset_index(drop=True)
    s = surv.loc[rows["pat_idx"]].reset_index(drop=True)
    n = len(rows)
    codes = rows["code"].to_numpy()
    hist = [info["histology"][h][0] for h in p["hist"]]
    dead = s["OS"].to_numpy() == 1
    known = ~np.isnan(s["OS"].to_numpy())
    os_time = _fmt(s["OS.time"])
    sparse = rng.random((n, 4))
    cols = {
        "_PATIENT": p["patient"].to_numpy(),
        "histological_type": hist,
        "sample_type": [_SAMPLE_TYPE_NAMES[c] for c in codes],
        "sample_type_id": codes,
        "_cohort": info["cohort"],
        "_primary_disease": primary_disease,
        "_primary_site": info["site"],
        "age_at_initial_pathologic_diagnosis": p["age"].astype(str).to_numpy(),
        "gender": p["gender"].to_numpy(),
        "vital_status": np.where(known, np.where(dead, "DECEASED", "LIVING"), ""),
        "days_to_death": np.where(dead, os_time, ""),
        "days_to_last_followup": np.where(known & ~dead, os_time, ""),
        "pathologic_stage": p["stage"].to_numpy(),
        "tumor_tissue_site": info["site"],
        "bcr_patient_barcode": p["patient"].to_numpy(),
        "bcr_sample_barcode": (rows["sample"] + rows["vial"]).to_numpy(),
        "tissue_source_site": p["patient"].str[5:7].to_numpy(),
        "disease_code": project,
        "is_ffpe": np.where(sparse[:, 0] < 0.03, "YES", "NO"),
        "initial_weight": np.where(sparse[:, 1] < 0.7,
                                   (100 + np.round(sparse[:, 2] * 900)).astype(int).astype(str),
                                   ""),
        "other_dx": np.where(sparse[:, 3] < 0.06, "Yes", ""),
        "radiation_therapy": np.where(sparse[:, 3] > 0.55, "NO",
                                      np.where(sparse[:, 3] > 0.35, "YES", "")),
        "new_tumor_event_after_initial_treatment": np.where(sparse[:, 2] < 0.2, "YES", ""),
    }
    df = pd.DataFrame(cols)
    df = df[sorted(df.columns)]  # real clinicalMatrix columns are in byte order
    df.insert(0, "sampleID", rows["sample"].to_numpy())
    genomic = f"_GENOMIC_ID_TCGA_{project}_exp_HiSeqV2"
    df[genomic] = [sid if sid in expr_ids else "" for sid in rows["sample"]]
    return _tsv(df)


def _tcga_survival(rows: pd.DataFrame, surv: pd.DataFrame) -> str:
    s = surv.loc[rows["pat_idx"]].reset_index(drop=True)
    df = pd.DataFrame({"sample": rows["sample"].to_numpy(),
                       "_PATIENT": rows["patient"].to_numpy()})
    for col in _TSV_SURVIVAL_COLUMNS[2:-1]:
        df[col] = _fmt(s[col])
    df["Redaction"] = ""
    return _tsv(df)


def _gdc_clinical(project: str, rows: pd.DataFrame, pats: pd.DataFrame, surv: pd.DataFrame,
                  rng: np.random.Generator) -> str:
    info = _PROJECTS[project]
    p = pats.loc[rows["pat_idx"]].reset_index(drop=True)
    s = surv.loc[rows["pat_idx"]].reset_index(drop=True)
    n = len(rows)
    codes = rows["code"].to_numpy()
    case_ids = {pid: str(uuid.UUID(bytes=rng.bytes(16), version=4))
                for pid in dict.fromkeys(p["patient"])}
    dead = s["OS"].to_numpy() == 1
    known = ~np.isnan(s["OS"].to_numpy())
    os_time = _fmt(s["OS.time"])
    extra = rng.random(n)
    df = pd.DataFrame({
        "sample": rows["gdc_sample"].to_numpy(),
        "id": [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n)],
        "case_id": [case_ids[pid] for pid in p["patient"]],
        "submitter_id": p["patient"].to_numpy(),
        "project_id": f"TCGA-{project}",
        "disease_type": info["disease_type"],
        "primary_site": "Bronchus and lung" if info["site"] == "Lung" else info["site"],
        "age_at_index.demographic": p["age"].astype(str).to_numpy(),
        "gender.demographic": p["gender"].str.lower().to_numpy(),
        "vital_status.demographic": np.where(known, np.where(dead, "Dead", "Alive"), ""),
        "days_to_death.demographic": np.where(dead, os_time, ""),
        "primary_diagnosis.diagnoses": [info["histology"][h][1] for h in p["hist"]],
        "ajcc_pathologic_stage.diagnoses": p["stage"].to_numpy(),
        "tissue_or_organ_of_origin.diagnoses": info["organ"],
        "days_to_last_follow_up.diagnoses": np.where(known & ~dead, os_time, ""),
        "sample_type.samples": [_SAMPLE_TYPE_NAMES[c] for c in codes],
        "sample_type_id.samples": codes,
        "tissue_type.samples": np.where(codes == "11", "Normal", "Tumor"),
        "tumor_descriptor.samples": np.where(codes == "11", "Not Applicable",
                                             np.where(codes == "06", "Metastatic", "Primary")),
        "preservation_method.samples": np.where(extra < 0.03, "FFPE",
                                                np.where(extra < 0.5, "Unknown", "")),
        "treatment_type.treatments": np.where(extra > 0.6, "Radiation Therapy, NOS", ""),
    })
    return _tsv(df)


def _gdc_survival(rows: pd.DataFrame, surv: pd.DataFrame) -> str:
    s = surv.loc[rows["pat_idx"]].reset_index(drop=True)
    keep = ~np.isnan(s["OS"].to_numpy())  # the GDC table has no rows for unknown OS
    df = pd.DataFrame({"sample": rows["gdc_sample"].to_numpy(), "OS": _fmt(s["OS"]),
                       "_PATIENT": rows["patient"].to_numpy(), "OS.time": _fmt(s["OS.time"])})
    return _tsv(df[keep])


# --------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------
def synthetic_cohort(
    out_dir,
    *,
    cohort: str = "brca",
    hub: str = "tcga",
    n_patients: int = 300,
    n_genes: int = 2000,
    n_markers: int = 20,
    n_prognostic: int = 10,
    missing_rate: float = 0.002,
    class_overlap: float | None = None,
    seed: int = 0,
    gzip: bool = True,
) -> SyntheticCohort:
    """Write a synthetic TCGA cohort in a real UCSC Xena layout.

    Files land under ``out_dir`` at the hub's own dataset paths, so the folder can serve as
    a hub mirror: hubs serve ``<hub>/download/<dataset path>``, so write into
    ``<dir>/download``, serve ``<dir>`` over HTTP and pass its address as ``--base-url``
    (see docs/ingest.md). Each file is written to a temporary name and renamed when
    complete. The content is deterministic for a given ``seed`` (gzip streams carry no name or time stamp).

    Layouts written:

    - ``tcga``: ``TCGA.<P>.sampleMap/HiSeqV2.gz`` (genes x samples, first header cell
      ``sample``, 15-character barcodes, log2(RSEM + 1)), ``TCGA.<P>.sampleMap/<P>_clinicalMatrix``
      and ``survival/<P>_survival.txt`` per member project ``<P>``.
    - ``gdc``: ``TCGA-<P>.star_tpm.tsv.gz`` (first header cell ``Ensembl_ID``, versioned
      Ensembl IDs, 16-character sample IDs with vial letter, log2(TPM + 1)),
      ``TCGA-<P>.clinical.tsv.gz``, ``TCGA-<P>.survival.tsv.gz`` and
      ``gencode.v36.annotation.gtf.gene.probemap``.
    - ``toil``: one pan-cohort ``tcga_RSEM_isoform_fpkm.gz`` (versioned transcript IDs,
      log2(FPKM + 0.001)), ``probeMap/gencode.v23.annotation.transcript.probemap`` and the
      TCGA-hub phenotype and survival tables.
    - always: ``cancer_gene_census.csv`` with the current COSMIC header and invented rows.

    Realism the readers must cope with: Solid Tissue Normal (``-11``, ~5 % of patients) and
    Metastatic (``-06``) samples, a second GDC aliquot (``-01B``) for two patients,
    expression samples absent from the phenotype, phenotype rows without expression,
    unlabelled histologies, sparse clinical columns, ``NA`` expression cells, patients with
    unknown survival, two genes named in the expression by an alias that the CGC lists
    under ``Synonyms``, and (toil) samples of other projects in the pan-cancer matrix.

    Parameters
    ----------
    out_dir
        Output folder (created if needed); existing files of the same names are replaced.
    cohort
        Preset name: ``brca``, ``nsclc``, ``rcc`` or ``coadread``.
    hub
        ``tcga``, ``gdc`` or ``toil``.
    n_patients
        Patients in the phenotype tables, over all member projects.
    n_genes
        Genes in the expression files (toil: 2-4 transcripts each).
    n_markers
        Genes up-regulated in each class (real symbols first where they fit the cohort).
    n_prognostic
        Genes whose expression drives the hazard.
    missing_rate
        Fraction of expression cells written as ``NA``.
    class_overlap
        Per-sample spread of the class programmes (see ``_expression_model``): 0 separates
        the classes perfectly, larger values blur them. Default: the preset's (brca 0.35,
        which gives a held-out balanced accuracy of about 0.85 on all genes).
    seed
        Seed of everything random (gene IDs and positions do not depend on it).
    gzip
        Gzip the files the hubs serve gzipped; with False they are written as plain text and
        their ``.gz`` suffix is dropped.

    Returns
    -------
    SyntheticCohort
        Paths of the files written and the planted ground truth.

    Raises
    ------
    CohortError
        Unknown cohort or hub.
    ValueError
        Sizes or rates out of range.
    """
    preset = get_preset(cohort)
    overlap = _check_arguments(preset, hub, n_patients, n_genes, n_markers, n_prognostic,
                               missing_rate, class_overlap)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
    r_pat, r_expr, r_surv, r_table, r_write, r_order = streams

    genes, cgc = _gene_universe(n_genes)
    pats = _patients(preset, n_patients, r_pat)
    smp = _samples(pats, r_pat)
    x, marker_idx, prog_idx = _expression_model(genes, preset, pats, smp, n_markers,
                                                n_prognostic, overlap, r_expr)
    surv = _survival_model(x, smp, pats, prog_idx, r_surv)

    # which samples each layout holds
    keep = smp["vial"].eq("A") | (hub == "gdc")
    expr_rows = smp[keep & smp["in_expr"] & ((smp["role"] != "foreign") | (hub == "toil"))]
    pheno_rows = smp[keep & smp["in_pheno"]]
    id_col = "gdc_sample" if hub == "gdc" else "sample"
    # expected counts: labelled primary tumours with expression and phenotype, per patient
    counted = smp[keep & smp["in_pheno"] & smp["in_expr"] & (smp["code"] == "01")]
    labels = pats["label"].to_numpy()[counted["pat_idx"].drop_duplicates().to_numpy()]

    g = genes[genes["in_expr"]].reset_index(drop=True)
    features, values, feat_of_gene, tx = _feature_values(hub, genes, g, x[expr_rows.index], r_expr)
    values[r_write.random(values.shape) < missing_rate] = np.nan
    expression, probemap = _write_matrices(out, hub, preset, expr_rows, id_col, features, values,
                                           g, tx, gzip, r_order)
    phenotype, survival = _write_tables(out, hub, preset, pheno_rows, pats, surv,
                                        set(expr_rows[id_col]), gzip, r_table)
    cgc_path = _write(out / "cancer_gene_census.csv", _cgc_text(genes, cgc), False)

    def feats(idx) -> tuple[str, ...]:
        return tuple(str(f) for i in idx for f in feat_of_gene[int(i)])

    return SyntheticCohort(
        cohort=preset.name, hub=hub, expression=tuple(expression), phenotype=tuple(phenotype),
        survival=tuple(survival), probemap=probemap, cgc=cgc_path,
        marker_genes={c: feats(marker_idx[c]) for c in preset.classes},
        prognostic_genes=feats(prog_idx),
        expected_counts={c: int((labels == c).sum()) for c in preset.classes},
    )


def _check_arguments(preset: CohortPreset, hub: str, n_patients: int, n_genes: int,
                     n_markers: int, n_prognostic: int, missing_rate: float,
                     class_overlap: float | None) -> float:
    """Raise on sizes or rates out of range; the class overlap to use."""
    if hub not in HUBS:
        raise CohortError(f"unknown hub {hub!r}; choose one of {', '.join(HUBS)}")
    n_classes = len(preset.classes)
    if n_patients < 20 * n_classes:
        raise ValueError(f"n_patients must be at least {20 * n_classes} for cohort "
                         f"{preset.name} ({n_classes} classes); got {n_patients}")
    if n_markers < 0 or n_prognostic < 0:
        raise ValueError("n_markers and n_prognostic must be >= 0")
    if not 0.0 <= missing_rate < 0.5:
        raise ValueError(f"missing_rate must be in [0, 0.5); got {missing_rate}")
    overlap = _CLASS_OVERLAP[preset.name] if class_overlap is None else float(class_overlap)
    if not 0.0 <= overlap <= 5.0:
        raise ValueError(f"class_overlap must be in [0, 5]; got {class_overlap}")
    probe, _ = _gene_universe(0)
    n_fixed = int(probe["in_expr"].sum())
    need = n_fixed + n_classes * n_markers + n_prognostic + 40
    if n_genes < need or n_genes > 90_000:
        raise ValueError(f"n_genes must be between {need} and 90000 for these settings "
                         f"({n_fixed} fixed genes + markers + prognostic genes + 40); "
                         f"got {n_genes}")
    return overlap


def _feature_values(hub: str, genes: pd.DataFrame, g: pd.DataFrame, x: np.ndarray,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict, dict]:
    """Feature IDs, features x samples values on the hub's scale, features of each gene.

    ``x`` holds the latent gene-level log2(RSEM + 1) of the written samples. The last item
    describes the toil transcripts (empty for the other hubs).
    """
    if hub != "toil":
        if hub == "gdc":
            features = np.asarray([f"{e}.{v}" for e, v in zip(g["ensembl"], g["version"],
                                                              strict=True)], dtype=object)
            tpm = (2.0 ** x - 1.0) * _GDC_SCALE * np.exp(rng.normal(0.0, 0.05, (len(x), 1)))
            values = np.log2(tpm + 1.0).T
        else:
            features = g["feature_symbol"].to_numpy(dtype=object)
            values = x.T.copy()
        return (features, values.astype(np.float64),
                {i: features[i: i + 1] for i in range(len(g))}, {})
    tx_gene = np.repeat(np.arange(len(g)), g["n_tx"].to_numpy())
    first_tx = np.concatenate([[0], np.cumsum(g["n_tx"].to_numpy())[:-1]])
    gene_pos = genes.index[genes["in_expr"]].to_numpy()
    offsets = np.concatenate([[0], np.cumsum(genes["n_tx"].to_numpy())[:-1]])
    t_index = offsets[gene_pos][tx_gene] + (np.arange(len(tx_gene)) - first_tx[tx_gene])
    features = np.asarray(
        [f"ENST{2_000_000 + (int(t) * 104729 + 7) % 1_000_000:011d}.{1 + int(t) % 9}"
         for t in t_index], dtype=object)
    # isoform proportions (fixed per transcript) with per-sample jitter
    # (floored so that no isoform of a planted gene sinks to the log floor)
    props = np.maximum(rng.gamma(1.5, 1.0, len(tx_gene)), 0.1)
    props /= np.bincount(tx_gene, props)[tx_gene]
    lin = (2.0 ** x - 1.0)[:, tx_gene] * props[None, :] * _TOIL_SCALE
    lin *= np.exp(rng.normal(0.0, 0.15, lin.shape))
    values = np.log2(lin + _TOIL_FLOOR).T
    feat_of_gene = {i: features[first_tx[i]: first_tx[i] + g.at[i, "n_tx"]] for i in range(len(g))}
    return features, values.astype(np.float64), feat_of_gene, {"gene": tx_gene, "index": t_index}


def _write_matrices(out: Path, hub: str, preset: CohortPreset, expr_rows: pd.DataFrame,
                    id_col: str, features: np.ndarray, values: np.ndarray, g: pd.DataFrame,
                    tx: dict, gzip: bool, rng: np.random.Generator) -> tuple[list[Path], Path | None]:
    """Expression matrices (one per member; toil: one) and the probemap the hub serves."""
    row_order = rng.permutation(len(features))  # real files are not sorted by name
    features_out, values = features[row_order], values[row_order]
    sample_ids = expr_rows[id_col].to_numpy()
    header = "Ensembl_ID" if hub == "gdc" else "sample"
    if hub == "toil":
        col_order = rng.permutation(len(sample_ids))
        path = out / _gz_name(TOIL_DATASETS["isoform"][0], gzip)
        expression = [_write(path, _matrix_text(header, features_out, sample_ids[col_order],
                                                values[:, col_order]), gzip)]
        g_rows = g.loc[tx["gene"][row_order]]
        # transcripts start at invented offsets inside their gene
        start = g_rows["start"].to_numpy() + (tx["index"][row_order] * 7919) % 997 * 10
        end = np.maximum(g_rows["end"].to_numpy(), start + 500)
        return expression, _write_probemap(out / TOIL_DATASETS["isoform"][1], features_out,
                                           g_rows, start, end)
    expression = []
    for p in (m.project for m in preset.members):
        mask = (expr_rows["member"] == p).to_numpy()
        if hub == "tcga":
            mask_idx = np.flatnonzero(mask)[np.argsort(sample_ids[mask], kind="stable")]
            name = f"TCGA.{p}.sampleMap/HiSeqV2.gz"
        else:
            mask_idx = rng.permutation(np.flatnonzero(mask))
            name = f"TCGA-{p}.star_tpm.tsv.gz"
        expression.append(_write(out / _gz_name(name, gzip), _matrix_text(
            header, features_out, sample_ids[mask_idx], values[:, mask_idx]), gzip))
    if hub != "gdc":
        return expression, None
    g_out = g.loc[row_order]
    return expression, _write_probemap(out / GDC_PROBEMAP, features_out, g_out,
                                       g_out["start"].to_numpy(), g_out["end"].to_numpy())


def _write_probemap(path: Path, features: np.ndarray, g_rows: pd.DataFrame, start: np.ndarray,
                    end: np.ndarray) -> Path:
    pm = pd.DataFrame({"id": features, "gene": g_rows["feature_symbol"].to_numpy(),
                       "chrom": g_rows["chrom"].to_numpy(), "chromStart": start,
                       "chromEnd": end, "strand": g_rows["strand"].to_numpy()})
    return _write(path, _tsv(pm), False)


def _write_tables(out: Path, hub: str, preset: CohortPreset, pheno_rows: pd.DataFrame,
                  pats: pd.DataFrame, surv: pd.DataFrame, expr_ids: set[str], gzip: bool,
                  rng: np.random.Generator) -> tuple[list[Path], list[Path]]:
    """Phenotype and survival tables, one of each per member project."""
    phenotype: list[Path] = []
    survival: list[Path] = []
    for member in preset.members:
        p = member.project
        rows = pheno_rows[pheno_rows["member"] == p]
        if hub == "gdc":
            rows = rows.sort_values("gdc_sample", kind="stable")
            phenotype.append(_write(out / _gz_name(f"TCGA-{p}.clinical.tsv.gz", gzip),
                                    _gdc_clinical(p, rows, pats, surv, rng), gzip))
            survival.append(_write(out / _gz_name(f"TCGA-{p}.survival.tsv.gz", gzip),
                                   _gdc_survival(rows, surv), gzip))
        else:
            rows = rows.sort_values("sample", kind="stable")
            phenotype.append(_write(out / f"TCGA.{p}.sampleMap/{p}_clinicalMatrix",
                                    _clinical_matrix(member, rows, pats, surv, expr_ids, rng),
                                    False))
            survival.append(_write(out / f"survival/{p}_survival.txt",
                                   _tcga_survival(rows, surv), False))
    return phenotype, survival


__all__ = ["SyntheticCohort", "synthetic_cohort", "CGC_HEADER"]
