"""Names shared across mirror-model: batch keys, loss names, AnnData slots, run-dir files.

One place for each name, so modules never spell a key as a scattered string literal.
Sample-level AnnData keys (patient_id, label, time, event...) come from
:mod:`mirror_genes.constants`.
"""

from mirror_genes.constants import EVENT, LABEL, PATIENT_ID, SAMPLE_ID, TIME  # noqa: F401

# --- batch dictionary keys (data layer -> model) -------------------------------------------
PATCHES = "patches"              # float (B, N, D) patch features
PATCH_MASK = "patch_mask"        # bool (B, N): True where a real patch sits (ragged bags padded)
COORDS = "coords"                # int (B, N, 2) level-0 pixel coordinates, when known
RNA = "rna"                      # float (B, G) standardised transcriptomics
SLIDE_MASK_NOISE = "slide_mask_noise"  # float (B, N) uniform noise that decides slide retention masks
RNA_MASK_NOISE = "rna_mask_noise"      # float (B, dim) uniform noise that decides RNA retention masks
STYLE_EPS = "style_eps"          # float (B, 2, latent) N(0,1) draws of the VAE reparameterisation
INDEX = "index"                  # long (B,) item index into the dataset
SLIDE_ID = "slide_id"            # list[str] slide file stems (not tensors)

# --- loss names (the model's forward returns these keys) -----------------------------------
LOSS = "loss"                    # weighted total
LOSS_ALIGN = "align"
LOSS_WSI_RETENTION = "wsi_retention"
LOSS_RNA_RETENTION = "rna_retention"
LOSS_STYLE = "style"
LOSS_CLUSTER = "cluster"
LOGIT_SCALE = "logit_scale"      # forward also returns the clamped multiplier exp(s), detached
LOSS_TERMS = (LOSS_ALIGN, LOSS_WSI_RETENTION, LOSS_RNA_RETENTION, LOSS_STYLE, LOSS_CLUSTER)

# --- representation kinds (get_latent_representation) ----------------------------------------
KIND_SLIDE = "slide"
KIND_RNA = "rna"
KIND_ALIGNED_SLIDE = "aligned_slide"
KIND_ALIGNED_RNA = "aligned_rna"

# --- baseline method names (every table and predictions file spells them so) ------------------
METHOD_ABMIL = "ABMIL"
METHOD_PORPOISE = "PORPOISE"
METHOD_LINEAR = "Linear"
METHOD_TANGLE = "TANGLE"
BASELINE_METHODS = (METHOD_ABMIL, METHOD_PORPOISE, METHOD_LINEAR, METHOD_TANGLE)

# --- embedding AnnData slots ------------------------------------------------------------------
OBSM_SLIDE = "X_mirror_slide"
OBSM_RNA = "X_mirror_rna"
OBSM_JOINT = "X_mirror"          # concat(slide, rna): what the paper's probes read
UNS_EMBED = "mirror_embed"
UNS_PRETRAIN = "mirror_pretrain"

# --- run directory layout ---------------------------------------------------------------------
RUN_CONFIG = "config.json"        # resolved configuration
RUN_MANIFEST = "run.json"         # marks a folder as a mirror-model run; fingerprints, versions
CHECKPOINT_LAST = "checkpoint_last.pt"
CHECKPOINT_EPOCH = "checkpoint_epoch{epoch:04d}.pt"
METRICS_CSV = "metrics.csv"
METRICS_JSONL = "metrics.jsonl"
PAIRING_REPORT = "pairing.json"
STANDARDIZER = "rna_standardizer.npz"

# --- evaluation outputs -----------------------------------------------------------------------
PREDICTIONS_CSV = "predictions.csv"
FOLD_METRICS_CSV = "metrics_per_fold.csv"
RUNS_CSV = "runs.csv"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
