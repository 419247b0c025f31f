"""Pretraining step benchmark (run by hand; results go to docs/benchmarks.md, JSON to benchmarks/results/).

    .venv/bin/python benchmarks/bench_pretrain.py --batch-size 2 --steps 3 --json benchmarks/results/pretrain_b2.json
        [--attention exact] [--precision bf16] [--activation-checkpointing] [--threads 2]
        [--embed-slides 4] [--embed-patches 2048]

Model: the reference configuration (768-d patch features, 2048 patches per slide, RNA input
10,234, model width 768, every module on; Nystrom attention unless ``--attention exact``) on
random inputs, fp32 unless ``--precision bf16`` (CPU autocast). ``torch.set_num_threads(2)``.

Measured: the wall time of S full training steps (the training loop's own ``train_step``:
prototype normalisation, forward, backward, Adam step) after one warm-up step; floating-point
operations of one forward+backward counted with ``torch.utils.flop_counter.FlopCounterMode``
(divided by the batch), corrected: a group-aware convolution backward (torch's counts a
depthwise convolution's weight gradient once per channel) and the fused CPU attention kernel
counted (torch counts it as 0); the raw count is kept too; peak
memory as the process's ``VmHWM`` (kernel high-water mark of the resident set) after the
steps; minor page faults per step (``ru_minflt``); then the embedding throughput (eval-mode
``encode`` of one slide with ``--embed-patches`` patches plus its RNA, per forward) in slides
per second.
Run each batch size in a fresh process: VmHWM never goes down.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch


def vm_hwm_mb() -> float:
    """Peak resident set (VmHWM) of this process, MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def random_batch(cfg, batch: int, n_patches: int, gen: torch.Generator) -> dict:
    from mirror_model import constants as C

    return {C.PATCHES: torch.randn(batch, n_patches, cfg.patch_dim, generator=gen),
            C.RNA: torch.randn(batch, cfg.n_genes, generator=gen),
            C.SLIDE_MASK_NOISE: torch.rand(batch, n_patches, generator=gen),
            C.RNA_MASK_NOISE: torch.rand(batch, cfg.dim, generator=gen),
            C.STYLE_EPS: torch.randn(batch, 2, cfg.latent_dim, generator=gen),
            C.INDEX: torch.arange(batch)}


def _conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, _groups, output_mask, out_shape, **kwargs) -> int:
    """Convolution backward: each requested gradient costs what the forward convolution costs.

    torch's own formula computes the weight gradient as a convolution over swapped batch and
    channel axes and ignores ``groups`` there, so for a depthwise convolution it counts that
    gradient ``channels`` times over (PPEG's 768-channel 7x7/5x5/3x3 convolutions: ~124
    phantom GFLOP per sample here, while their backward takes under 2 % of the step).
    """
    from torch.utils.flop_counter import conv_flop_count

    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed=transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def _baddbmm_inplace_flop(self_shape, batch1_shape, batch2_shape, *args, out_shape=None, **kwargs) -> int:
    """In-place ``baddbmm_``: torch has a formula for ``baddbmm`` only (the in-place form counts 0)."""
    b, m, k = batch1_shape
    return 2 * b * m * k * batch2_shape[-1]


def _eigh_flop(a_shape, *args, out_shape=None, **kwargs) -> int:
    """Symmetric eigendecomposition with eigenvectors, counted as ``9 n^3`` per matrix (Golub and
    Van Loan's count for tridiagonalisation plus the symmetric QR with vectors; LAPACK's
    divide-and-conquer does less): torch's counter has no formula for it."""
    n = a_shape[-1]
    batch = 1
    for d in a_shape[:-2]:
        batch *= d
    return 9 * batch * n ** 3


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """The fused CPU attention kernel: torch registers formulas for the CUDA kernels only."""
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                            **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def count_gflop(module, batch: dict, precision: str) -> tuple[float, float]:
    """GFLOP of one forward+backward (no optimiser step): (corrected count, torch's raw count).

    Corrected: group-aware convolution backward, the fused CPU attention kernel counted
    (torch's counter has formulas for the CUDA attention kernels only, so on the CPU it counts
    no attention product at all), in-place ``baddbmm_`` counted like ``baddbmm``, and the
    pseudo-inverse's eigendecompositions counted (see :func:`_eigh_flop`). Counted on one
    intra-op thread: the counter sees only the calling thread, and on more threads the
    eigendecompositions run in a thread pool.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _count(module, batch, precision)
    finally:
        torch.set_num_threads(threads)


def _count(module, batch: dict, precision: str) -> tuple[float, float]:
    from torch.utils.flop_counter import FlopCounterMode

    from mirror_model import constants as C
    from mirror_model.train import autocast

    counter = FlopCounterMode(display=False)
    with counter:
        with autocast(torch.device("cpu"), precision):
            out = module(batch)
        out[C.LOSS].backward()
    module.zero_grad(set_to_none=True)
    raw = counter.get_total_flops()
    aten = torch.ops.aten
    fixed = FlopCounterMode(display=False, custom_mapping={
        aten.baddbmm_: _baddbmm_inplace_flop,
        aten._linalg_eigh: _eigh_flop,
        aten.convolution_backward: _conv_backward_flop,
        aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flop})
    with fixed:
        with autocast(torch.device("cpu"), precision):
            out = module(batch)
        out[C.LOSS].backward()
    module.zero_grad(set_to_none=True)
    return fixed.get_total_flops() / 1e9, raw / 1e9


def time_steps(module, cfg_train, batch: dict, steps: int) -> tuple[list[float], list[float], list[int]]:
    """Wall seconds, CPU seconds and minor page faults of each of ``steps`` steps after a warm-up."""
    import resource

    from mirror_model.train import DistInfo
    from mirror_model.train._loop import _setup, train_step

    run = _setup(module, cfg_train, None, {}, False, DistInfo())
    train_step(run, batch)  # warm-up
    times, cpu, faults = [], [], []
    for _ in range(steps):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0, c0 = time.perf_counter(), time.process_time()
        train_step(run, batch)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    return times, cpu, faults


def embed_rate(module, cfg, n_slides: int, n_patches: int, gen: torch.Generator) -> float:
    """Slides per second of eval-mode encoding, one slide (+ RNA) per forward."""
    from mirror_model import constants as C

    module.eval()
    batches = [random_batch(cfg, 1, n_patches, gen) for _ in range(n_slides + 1)]
    with torch.inference_mode():
        module.encode({C.PATCHES: batches[0][C.PATCHES], C.RNA: batches[0][C.RNA]})  # warm-up
        t0 = time.perf_counter()
        for b in batches[1:]:
            module.encode({C.PATCHES: b[C.PATCHES], C.RNA: b[C.RNA]})
    return n_slides / (time.perf_counter() - t0)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--attention", choices=("nystrom", "exact"), default="nystrom")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--activation-checkpointing", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n-patches", type=int, default=2048)
    p.add_argument("--embed-slides", type=int, default=4)
    p.add_argument("--embed-patches", type=int, default=2048)
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count (it adds one slow pass)")
    args = p.parse_args(argv)

    from mirror_model.config import ModelConfig, TrainConfig
    from mirror_model.nn import MirrorModule
    from mirror_model.train import seed_everything

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    cfg = ModelConfig(patch_dim=768, n_genes=10234, attention=args.attention,
                      activation_checkpointing=args.activation_checkpointing)
    train = TrainConfig(batch_size=args.batch_size, device="cpu", precision=args.precision,
                        n_patches=args.n_patches)
    seed_everything(0)
    module = MirrorModule(cfg)
    gen = torch.Generator().manual_seed(0)
    batch = random_batch(cfg, args.batch_size, args.n_patches, gen)
    gflop, gflop_raw = (None, None) if args.no_flops else count_gflop(module, batch, args.precision)
    times, cpu, faults = time_steps(module, train, batch, args.steps)
    peak = vm_hwm_mb()
    rate = embed_rate(module, cfg, args.embed_slides, args.embed_patches, gen) if args.embed_slides else None
    result = {
        "batch_size": args.batch_size, "steps": args.steps, "step_s": times,
        "step_s_median": statistics.median(times), "step_s_min": min(times),
        "samples_per_s": args.batch_size / statistics.median(times),
        # CPU seconds of this process per step: with other jobs on the machine, wall time grows
        # but this stays near threads x the step's compute (spin-waiting aside)
        "cpu_s_per_step_median": statistics.median(cpu),
        # freshly mapped pages touched per step (memory the allocator returned to the kernel and
        # took back): what made the reference's throughput collapse at batch 16
        "minor_faults_per_step_median": statistics.median(faults),
        "peak_rss_mb": peak, "gflop_per_sample": None if gflop is None else gflop / args.batch_size,
        # torch's FlopCounterMode as is (depthwise-convolution weight gradients counted x channels,
        # the fused CPU attention not at all)
        "gflop_per_sample_torch_counter": None if gflop_raw is None else gflop_raw / args.batch_size,
        "embed_slides_per_s": rate, "embed_patches": args.embed_patches,
        "attention": args.attention, "precision": args.precision,
        "activation_checkpointing": args.activation_checkpointing, "threads": args.threads,
        "n_patches": args.n_patches, "parameters": sum(p.numel() for p in module.parameters()),
        "load_avg_1min": [load_start, os.getloadavg()[0]],  # the machine is shared: context for times
        "torch": torch.__version__, "python": platform.python_version(), "machine": platform.processor(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "step_s"}), file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
