"""``mirror-model evaluate``: linear / few-shot probes of a pretraining run's frozen encoders."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer

from ._common import cli_errors, info


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run with ``n`` torch threads (restored afterwards); None leaves torch's default."""
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def evaluate_command(
    task: Annotated[str, typer.Option("--task", help="subtyping or survival.")],
    protocol: Annotated[str, typer.Option("--protocol", help="linear (inner-validated probe; + logistic regression for subtyping) or fewshot.")],
    run: Annotated[Path, typer.Option("--run", help="Pretraining run: an --all-folds folder (RUN/fold_<k> per fold) or one run / checkpoint used for every fold.")],
    slides: Annotated[Path, typer.Option("--slides", help="Folder of patch-feature files.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (absent or empty; --force replaces it).")],
    rna: Annotated[Path | None, typer.Option("--rna", help="Refined transcriptomics (.h5ad; its obs give the labels). Without it: slides only.")] = None,
    labels: Annotated[Path | None, typer.Option("--labels", help="CSV/TSV of patient_id, label, time, event (when the RNA input carries no labels).")] = None,
    splits: Annotated[Path | None, typer.Option("--splits", help="Folder of splits_<k>.csv (default: the splits recorded in the run).")] = None,
    modalities: Annotated[str, typer.Option("--modalities", help="wsi+rna (concat of slide and RNA embeddings), wsi or rna.")] = "wsi+rna",
    shots: Annotated[list[int] | None, typer.Option("--shots", help="Few-shot k, cases per class or survival bin (repeatable).")] = None,
    n_repeats: Annotated[int, typer.Option("--n-repeats", help="Seeded few-shot draws per fold and k.")] = 5,
    reference_protocol: Annotated[bool, typer.Option("--reference-protocol", help="Choose the probe epoch on the reported fold, as the reference does (outputs labelled -reference).")] = False,
    probe_epochs: Annotated[int, typer.Option("--probe-epochs", help="Probe epochs (reference 100).")] = 100,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the probes and few-shot draws.")] = 42,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Embedding cache (default RUN/.cache).")] = None,
    n_patches: Annotated[int | None, typer.Option("--n-patches", help="Embed a fixed seeded sample of N patches per slide (default: all).")] = None,
    embed_seed: Annotated[int, typer.Option("--embed-seed", help="Seed of the --n-patches sample.")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Slides per encoder pass.")] = 1,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N (encoders).")] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="Torch threads (default: torch's).")] = None,
    umap: Annotated[bool, typer.Option("--umap/--no-umap", help="Draw a UMAP of fold 0's embeddings.")] = True,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty --out folder.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Probe a pretraining run's frozen encoders over patient-level folds (embeddings cached)."""
    from mirror_genes.utils import atomic_path, check_output

    from .._evaluate import ProbeSettings, command_line, evaluate, write_evaluation

    given = dict(locals())
    with cli_errors():
        check_output(out, inputs=[rna, labels, splits, run], force=force, kind="dir")
        settings = ProbeSettings(shots=tuple(shots or (10,)), n_repeats=n_repeats, epochs=probe_epochs,
                                 reference_protocol=reference_protocol, seed=seed)
        with torch_threads(threads):
            result = evaluate(run, slides=slides, rna=rna, labels=labels, task=task, protocol=protocol, splits=splits,
                              modalities=modalities, settings=settings, cache_dir=cache_dir, n_patches=n_patches,
                              embed_seed=embed_seed, batch_size=batch_size, device=device,
                              progress=False if quiet else None)
            with atomic_path(out, is_dir=True) as tmp:  # all or nothing
                write_evaluation(result, tmp, command=command_line(evaluate_command, given), umap=umap)
        unique = {e["cache"]: e["cache_hit"] for e in result.info["embeddings"]}
        info(f"wrote {out}: {len(result.result.predictions)} predictions, {result.info['n_folds']} folds; "
             f"encoders ran for {sum(not h for h in unique.values())} checkpoint(s), "
             f"{sum(unique.values())} read from the cache")
