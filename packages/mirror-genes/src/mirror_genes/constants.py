"""Names of the AnnData slots this project reads and writes, in one place.

Every ``.obs``/``.var``/``.uns``/``.layers`` key used across modules (and by mirror-model)
is spelled here, so that a rename happens once.
"""

# .obs: one row per sample
SAMPLE_ID = "sample_id"          # 15-character TCGA sample barcode
PATIENT_ID = "patient_id"        # 12-character TCGA patient barcode
LABEL = "label"                  # default class label column (pipelines take ``label_key``)
TIME = "time"                    # survival time, days
EVENT = "event"                  # 1 = event (death) observed, 0 = censored
SAMPLE_TYPE = "sample_type"
PROJECT = "tcga_project"         # TCGA project of the sample (e.g. LUAD in the nsclc cohort)

# .var: one row per feature
GENE_SYMBOL = "gene_symbol"
ENSEMBL_ID = "ensembl_id"
PANEL = "mirror_panel"
SELECTION_FREQUENCY = "selection_frequency"
RFECV_SUPPORT = "rfecv_support"
RFE_CONSENSUS = "rfe_consensus"
IMPUTE_MEDIAN = "impute_median"      # per-feature median that filled the missing cells
CGC_MEMBER = "cgc_member"            # bool: feature of a COSMIC CGC gene of the cohort
CGC_GENE = "cgc_gene"                # the CGC symbol that claimed the feature ("" if none)
CGC_TUMOUR_TYPES = "cgc_tumour_types"  # the gene's CGC tumour types that matched, ", "-joined
RFECV_RANKING = "rfecv_ranking"

# .varm: features x outer folds
FOLD_SUPPORT = "fold_support"        # bool: RFE support of each outer fold
FOLD_PANEL = "fold_panel"            # bool: RFE support | CGC of each outer fold

# .layers
MISSING = "missing"              # boolean: the cell was missing in the source file

# .uns
UNS_INGEST = "mirror_genes"
UNS_SELECT = "mirror_select"
UNS_SELECT_JSON = "mirror_select_json"  # UNS_SELECT as JSON in selection.h5ad (nested lists)
UNS_DROPPED_SAMPLES = "dropped_samples"  # samples select() dropped (no label), by reason
UNS_RFECV = "rfecv"
UNS_RFECV_FOLDS = "rfecv_folds"
UNS_CGC = "cgc"
UNS_PANEL = "panel"
UNS_IMPUTE = "impute_median"
UNS_FILTER = "filter_features"
UNS_XENA_MATRIX = "xena_matrix"
