"""Cohort presets: which Xena datasets make a cohort, how samples are labelled, and the
COSMIC Cancer Gene Census tumour-type keywords used by curation.

Every preset is built from one or more Xena *members* (TCGA projects). Single-member presets
(``brca``) label samples from a phenotype column; multi-member presets (``nsclc``, ``rcc``,
``coadread``) label each sample with its member project.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._errors import CohortError

TCGA_HUB = "https://tcga.xenahubs.net"
GDC_HUB = "https://gdc-hub.s3.us-east-1.amazonaws.com"
TOIL_HUB = "https://toil-xena-hub.s3.us-east-1.amazonaws.com"
HUBS = {"tcga": TCGA_HUB, "gdc": GDC_HUB, "toil": TOIL_HUB}

# toil hub: pan-cancer matrices, cut to a cohort by its TCGA-hub phenotype's samples.
TOIL_DATASETS = {
    "isoform": ("tcga_RSEM_isoform_fpkm.gz", "probeMap/gencode.v23.annotation.transcript.probemap"),
    "gene": ("tcga_RSEM_gene_fpkm.gz", "probeMap/gencode.v23.annotation.gene.probemap"),
}
GDC_PROBEMAP = "gencode.v36.annotation.gtf.gene.probemap"


@dataclass(frozen=True)
class Member:
    """One TCGA project as laid out on the Xena hubs."""

    project: str  # "BRCA"
    primary_disease: str  # Xena `_primary_disease` value
    oncotree: tuple[str, ...] = ()  # cBioPortal `Oncotree Code`s of this project

    def datasets(self, hub: str) -> dict[str, str]:
        """Dataset paths (relative to ``<hub>/download/``) for expression/phenotype/survival."""
        p = self.project
        tcga_pheno = f"TCGA.{p}.sampleMap/{p}_clinicalMatrix"
        tcga_surv = f"survival/{p}_survival.txt"
        if hub == "tcga":
            return {"expression": f"TCGA.{p}.sampleMap/HiSeqV2.gz", "phenotype": tcga_pheno,
                    "survival": tcga_surv}
        if hub == "gdc":
            return {"expression": f"TCGA-{p}.star_tpm.tsv.gz",
                    "phenotype": f"TCGA-{p}.clinical.tsv.gz",
                    "survival": f"TCGA-{p}.survival.tsv.gz", "probemap": GDC_PROBEMAP}
        if hub == "toil":
            # the pan-cancer matrix is shared by all members; phenotype/survival from TCGA hub
            return {"phenotype": tcga_pheno, "survival": tcga_surv}
        raise CohortError(f"unknown hub {hub!r}; choose one of {', '.join(HUBS)}")


@dataclass(frozen=True)
class LabelRule:
    """Map values of the first phenotype column present (in order) to class labels."""

    columns: tuple[str, ...]
    mapping: dict[str, str]


@dataclass(frozen=True)
class CohortPreset:
    name: str
    description: str
    members: tuple[Member, ...]
    classes: tuple[str, ...]
    cosmic_keywords: tuple[str, ...]
    label_rule: LabelRule | None = None  # None: label = member project
    hubs: tuple[str, ...] = ("tcga", "gdc", "toil")
    notes: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def multi_member(self) -> bool:
        return len(self.members) > 1


_BRCA_RULE = LabelRule(
    columns=("histological_type", "oncotree_code", "Oncotree Code", "primary_diagnosis.diagnoses",
             "primary_diagnosis"),
    mapping={
        # Xena TCGA hub clinicalMatrix `histological_type`
        "Infiltrating Ductal Carcinoma": "IDC",
        "Infiltrating Lobular Carcinoma": "ILC",
        # cBioPortal / OncoTree codes
        "IDC": "IDC",
        "ILC": "ILC",
        # GDC `primary_diagnosis` (ICD-O-3 names)
        "Infiltrating duct carcinoma, NOS": "IDC",
        "Lobular carcinoma, NOS": "ILC",
    },
)

PRESETS: dict[str, CohortPreset] = {
    "brca": CohortPreset(
        name="brca",
        description="TCGA-BRCA: invasive ductal (IDC) vs invasive lobular (ILC) carcinoma",
        members=(Member("BRCA", "breast invasive carcinoma", ("IDC", "ILC", "BRCA")),),
        classes=("IDC", "ILC"),
        cosmic_keywords=("breast", "lobular breast", "breast carcinoma", "luminal A breast",
                         "secretory breast", "phyllodes tumour of the breast"),
        label_rule=_BRCA_RULE,
        notes="Other histologies (mixed, mucinous, 'Other, specify', ...) are dropped.",
    ),
    "nsclc": CohortPreset(
        name="nsclc",
        description="TCGA-LUAD + TCGA-LUSC: lung adenocarcinoma vs lung squamous cell carcinoma",
        members=(Member("LUAD", "lung adenocarcinoma", ("LUAD",)),
                 Member("LUSC", "lung squamous cell carcinoma", ("LUSC",))),
        classes=("LUAD", "LUSC"),
        cosmic_keywords=("NSCLC", "lung", "lung adenocarcinoma", "lung SCC",
                         "lung squamous cell carcinoma", "non small cell lung cancer",
                         "lung cancer"),
    ),
    "rcc": CohortPreset(
        name="rcc",
        description="TCGA-KIRC + KIRP + KICH: clear cell vs papillary vs chromophobe RCC",
        members=(Member("KIRC", "kidney clear cell carcinoma", ("CCRCC",)),
                 Member("KIRP", "kidney papillary cell carcinoma", ("PRCC",)),
                 Member("KICH", "kidney chromophobe", ("CHRCC",))),
        classes=("KIRC", "KIRP", "KICH"),
        cosmic_keywords=("renal", "clear cell renal carcinoma", "renal cell carcinoma",
                         "papillary renal", "kidney", "ccRCC", "RCC", "chromophobe"),
    ),
    "coadread": CohortPreset(
        name="coadread",
        description="TCGA-COAD + TCGA-READ: colon vs rectum adenocarcinoma",
        members=(Member("COAD", "colon adenocarcinoma", ("COAD",)),
                 Member("READ", "rectum adenocarcinoma", ("READ",))),
        classes=("COAD", "READ"),
        cosmic_keywords=("colorectal", "colon", "rectal", "colorectal adenocarcinoma",
                         "colon carcinoma", "CRC"),
    ),
}


def get_preset(name: str) -> CohortPreset:
    """The preset called ``name`` (case-insensitive); CohortError lists the known ones."""
    key = str(name).strip().lower()
    if key not in PRESETS:
        raise CohortError(f"unknown cohort {name!r}; known cohorts: {', '.join(PRESETS)}")
    return PRESETS[key]
