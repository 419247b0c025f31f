"""Xena matrix parsing benchmark (run by hand; results go to docs/benchmarks.md).

    .venv/bin/python benchmarks/bench_ingest.py [--workdir benchmarks/results/ingest]

1. Throughput: parse a gzipped genes x samples Xena matrix (BRCA HiSeqV2 size, 20,530 x 1,218)
   with ``read_xena_matrix`` against ``zcat FILE > /dev/null`` on the same file.
2. Memory: stream 200 of 2,000 sample columns out of a 50,000-row matrix; peak RSS of a fresh
   process, compared with 3x the kept float32 matrix + 300 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

HERE = Path(__file__).resolve().parent


def make_matrix(path: Path, n_genes: int, n_samples: int, seed: int = 0) -> None:
    """Realistic log2(RSEM+1)-like values with 4 decimals, NA cells, gzip level 6."""
    if path.exists():
        return
    import gzip

    rng = np.random.default_rng(seed)
    samples = [f"TCGA-{i // 10000:02d}-{i % 10000:04d}-01" for i in range(n_samples)]
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wb", compresslevel=6) as fh:
        fh.write(("sample\t" + "\t".join(samples) + "\n").encode())
        chunk = 2000
        for start in range(0, n_genes, chunk):
            rows = min(chunk, n_genes - start)
            means = rng.uniform(0, 14, size=(rows, 1))
            values = np.clip(means + rng.normal(0, 1.5, size=(rows, n_samples)), 0, None)
            values = np.round(values, 4).astype(np.float64)
            cols = {"sample": pa.array([f"GENE{g:06d}" for g in range(start, start + rows)])}
            for j, s in enumerate(samples):
                col = values[:, j]
                mask = rng.random(rows) < 0.001
                cols[s] = pa.array(col, mask=mask)
            buf = pa.BufferOutputStream()
            pcsv.write_csv(pa.table(cols), buf, write_options=pcsv.WriteOptions(
                include_header=False, delimiter="\t", quoting_style="none"))
            fh.write(buf.getvalue().to_pybytes().replace(b"\t\n", b"\tNA\n")
                     .replace(b"\t\t", b"\tNA\t").replace(b"\t\t", b"\tNA\t"))
    tmp.rename(path)


def best_of(n: int, fn) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


CHILD = """
import resource, sys, time
import numpy as np
from mirror_genes.io import read_xena_matrix, read_matrix_header
path, every = sys.argv[1], int(sys.argv[2])
def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
base = hwm()
header = read_matrix_header(path)
keep = header[::every] if every > 1 else None
t = time.perf_counter()
a = read_xena_matrix(path, samples=keep, progress=False)
dt = time.perf_counter() - t
peak = hwm()
print(dt, base * 1024, peak * 1024, a.n_obs, a.n_vars, float(np.nanmean(a.X)))
"""


def run_child(path: Path, every: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(every)], check=True,
                         capture_output=True, text=True, env={**os.environ, "MIRROR_NO_PROGRESS": "1"})
    dt, base, peak, n_obs, n_vars, mean = out.stdout.split()
    return {"seconds": float(dt), "baseline_rss": int(base), "peak_rss": int(peak),
            "n_obs": int(n_obs), "n_vars": int(n_vars)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=HERE / "results" / "ingest")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--toil-like", action="store_true",
                    help="also stream 1,100 of 10,500 columns out of a 20,000-row matrix")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = {}

    hiseq = args.workdir / "HiSeqV2_like.tsv.gz"
    make_matrix(hiseq, 20530, 1218)
    uncompressed = int(subprocess.run(f"zcat {hiseq} | wc -c", shell=True, check=True,
                                      capture_output=True, text=True).stdout)
    zcat = best_of(args.repeats, lambda: subprocess.run(f"zcat {hiseq} > /dev/null", shell=True, check=True))
    parse = min(run_child(hiseq, 1)["seconds"] for _ in range(args.repeats))
    results["throughput"] = {
        "file": "20,530 genes x 1,218 samples, gzip -6",
        "compressed_mb": hiseq.stat().st_size / 1e6, "uncompressed_mb": uncompressed / 1e6,
        "zcat_s": zcat, "parse_s": parse, "parse_mb_per_s": uncompressed / 1e6 / parse,
        "zcat_mb_per_s": uncompressed / 1e6 / zcat, "fraction_of_zcat": zcat / parse,
    }

    wide = args.workdir / "wide_50000x2000.tsv.gz"
    make_matrix(wide, 50000, 2000, seed=1)
    child = run_child(wide, 10)
    kept = child["n_obs"] * child["n_vars"] * 4
    budget = 3 * kept + 300e6
    results["streaming_memory"] = {
        **child, "kept_matrix_mb": kept / 1e6, "budget_mb": budget / 1e6,
        "peak_rss_mb": child["peak_rss"] / 1e6, "baseline_rss_mb": child["baseline_rss"] / 1e6,
        "within_budget": child["peak_rss"] < budget,
    }
    if args.toil_like:
        toil = args.workdir / "toil_like_20000x10500.tsv.gz"
        make_matrix(toil, 20000, 10500, seed=2)
        child = run_child(toil, 10500 // 1100)
        kept = child["n_obs"] * child["n_vars"] * 4
        results["toil_like_streaming"] = {
            **child, "kept_matrix_mb": kept / 1e6, "full_matrix_mb": 20000 * 10500 * 4 / 1e6,
            "peak_rss_mb": child["peak_rss"] / 1e6, "baseline_rss_mb": child["baseline_rss"] / 1e6,
            "compressed_mb": toil.stat().st_size / 1e6,
        }
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    results["machine"] = {"nproc": os.cpu_count(), "cpu": cpu}
    out = args.workdir / "results.json"
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
