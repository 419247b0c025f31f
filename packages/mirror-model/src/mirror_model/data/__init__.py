"""Data layer: slide patch features, transcriptomics, pairing, the dataset and its collate.

Typical use (one fold)::

    slides = discover_slides("features/")            # TRIDENT/CLAM .h5 or reference .pt
    rna = read_rna("brca_refined.h5ad")               # or <cohort>_pruned_rna.csv
    pairing = pair_slides(slides, rna)                # print(pairing.report)
    train = pairing.restrict(train_patients, name="train")
    std = Standardizer.fit(rna, patients=train.patients)
    ds = MirrorDataset(train, standardizer=std, n_patches=2048, seed=42, dim=768, latent_dim=128)
    loader = DataLoader(ds, batch_size=16, shuffle=True, collate_fn=collate_bags)
    for epoch in ...: ds.set_epoch(epoch)

The batch contract is docs/model-internals.md.
"""

from ._dataset import SAMPLING, MirrorDataset, collate_bags, sample_patches
from ._ids import patient_id_of, sample_id_of
from ._pairing import Pairing, PairingReport, pair_slides
from ._rna import RnaTable, Standardizer, read_rna
from ._slides import SUFFIXES, SlideBag, SlideRecord, discover_slides, read_slide, slide_info, validate_slides

__all__ = [
    "SAMPLING", "SUFFIXES", "MirrorDataset", "Pairing", "PairingReport", "RnaTable", "SlideBag", "SlideRecord",
    "Standardizer", "collate_bags", "discover_slides", "pair_slides", "patient_id_of", "read_rna", "read_slide",
    "sample_id_of", "sample_patches", "slide_info", "validate_slides",
]
