"""``mirror-model embed``: slide (and RNA) embeddings of a trained run into an .h5ad."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import cli_errors, info


def embed_command(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Run folder (its last checkpoint) or a checkpoint file.")],
    slides: Annotated[Path, typer.Option("--slides", help="Folder of patch-feature files.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .h5ad (one row per slide).")],
    rna: Annotated[Path | None, typer.Option("--rna", help="Refined transcriptomics (.h5ad); without it, slide embeddings only.")] = None,
    n_patches: Annotated[int | None, typer.Option("--n-patches", help="Embed a fixed seeded sample of N patches per slide (default: all patches).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the --n-patches sample.")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Slides per forward pass (ragged bags are padded and masked).")] = 1,
    device: Annotated[str | None, typer.Option("--device", help="auto (CUDA when present), cpu, cuda or cuda:N.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out file.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Embed slides (and their RNA) with a pretrained model; deterministic (eval mode)."""
    from mirror_genes.utils import check_output

    from .. import constants as C
    from .._embed import embed, write_embedding
    from .._model import MIRROR

    with cli_errors():
        check_output(out, inputs=[rna, checkpoint], force=force, kind="file")
        model = MIRROR.load(checkpoint)
        adata = embed(model, slides, rna, sampling="fixed" if n_patches else "all", n_patches=n_patches,
                      seed=seed, batch_size=batch_size, device=device or "auto",
                      progress=False if quiet else None)
        write_embedding(adata, out)
        slots = ", ".join(k for k in (C.OBSM_SLIDE, C.OBSM_RNA, C.OBSM_JOINT) if k in adata.obsm)
        info(f"wrote {out}: {adata.n_obs} slides; obsm {slots}")
