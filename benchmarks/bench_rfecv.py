"""RFE-CV benchmark (run by hand; results go to docs/benchmarks.md, JSON to benchmarks/results/).

    .venv/bin/python benchmarks/bench_rfecv.py [--cases a,b,c] [--skip-sklearn]

Configuration everywhere: the MIRROR reference, ``RFECV(StandardScaler + LinearSVC(C=1,
squared hinge, l2, max_iter=5000), step=0.05, cv=StratifiedKFold(5), scoring="accuracy")``.

a. synthetic n=900, p=20,000 (log-normal-ish expression, 50 informative features, 2 classes):
   ``engine="fast"`` against ``engine="sklearn"`` (scikit-learn's RFECV on the same folds):
   wall time, speed-up, chosen size, support Jaccard, mean-score curve difference.
b. transcript scale n=1,000, p=198,000 (float32): the fast engine only, wall time and peak RSS.
c. TCGA-BRCA (../shared/data/tcga-brca): IDC vs ILC on the Xena gene-level z-scores (NA ->
   gene median, clipped to [-10, 10]); both engines: time, chosen size, Jaccard, CDH1's rank.

Every (case, engine) runs in a fresh subprocess; its peak memory is ``ru_maxrss`` of that
process (the data alone are reported as the peak before the call).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BRCA = ROOT.parent / "shared" / "data" / "tcga-brca"


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------

def make_synthetic(n: int, p: int, n_informative: int = 50, seed: int = 0):
    """log2(1 + 2^z) of a normal z per gene (mean ~ N(1.5, 1.5), sd ~ U(0.4, 1.2)) plus a
    per-sample library effect; ``n_informative`` genes shifted by 0.3-0.8 in class B (40 %).
    Built in column blocks (float32) so that the peak memory stays near the matrix size."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(np.int64)
    X = np.empty((n, p), dtype=np.float32)
    lib = rng.normal(0, 0.25, n).astype(np.float32)[:, None]
    informative = np.sort(rng.choice(p, n_informative, replace=False))
    block = 8192
    for j0 in range(0, p, block):
        b = min(p, j0 + block) - j0
        mu = rng.normal(1.5, 1.5, b).astype(np.float32)
        sd = rng.uniform(0.4, 1.2, b).astype(np.float32)
        z = mu + lib + sd * rng.standard_normal((n, b), dtype=np.float32)
        X[:, j0:j0 + b] = np.log2(np.float32(1.0) + np.exp2(z))
    shift = (rng.uniform(0.3, 0.8, n_informative) * rng.choice([-1, 1], n_informative))
    X[:, informative] += (y[:, None] * shift[None, :]).astype(np.float32)
    np.maximum(X[:, informative], 0, out=X[:, informative])
    labels = np.where(y == 1, "B", "A")
    return X, labels, [f"g{j}" for j in range(p)], informative


def load_brca():
    import pandas as pd

    expr = pd.read_csv(BRCA / "expression.tsv.gz", sep="\t", index_col=0)
    clin = pd.read_csv(BRCA / "clinicalMatrix.tsv", sep="\t", index_col=0,
                       usecols=["sampleID", "histological_type"])
    kind = clin["histological_type"].map({"Infiltrating Ductal Carcinoma": "IDC",
                                          "Infiltrating Lobular Carcinoma": "ILC"}).dropna()
    samples = [s for s in expr.columns if s in kind.index]
    X = expr[samples].T  # samples x genes
    X = X.fillna(X.median(axis=0)).clip(-10, 10)
    X = X.loc[:, X.notna().all(axis=0)]  # genes NA in every kept sample
    return (X.to_numpy(dtype=np.float64), kind.loc[samples].to_numpy().astype(str),
            list(X.columns), None)


def build(case: str):
    if case == "a":
        return make_synthetic(900, 20_000)
    if case == "b":
        return make_synthetic(1_000, 198_000)
    if case == "c":
        return load_brca()
    raise ValueError(case)


# ----------------------------------------------------------------------------------------------
# one (case, engine) in this process
# ----------------------------------------------------------------------------------------------

def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def worker(case: str, engine: str, out: Path) -> None:
    import anndata as ad
    import pandas as pd

    from mirror_genes.tl._rfecv import rfecv

    os.environ["MIRROR_NO_PROGRESS"] = "1"
    X, labels, names, informative = build(case)
    if engine == "sklearn-exact":
        return worker_exact(case, X, labels, names, out)
    adata = ad.AnnData(X, obs=pd.DataFrame({"label": labels},
                                           index=[f"s{i}" for i in range(X.shape[0])]),
                       var=pd.DataFrame(index=names))
    del X
    rss_data = _maxrss_mb()
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    rfecv(adata, "label", engine=engine, progress=False)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    u = adata.uns["rfecv"]
    ranking = adata.var["rfecv_ranking"].to_numpy()
    res = {
        "ranking_sha": hashlib.sha256(ranking.astype(np.int64).tobytes())
        .hexdigest(),
        "case": case, "engine": engine, "n_samples": int(adata.n_obs),
        "n_features": int(adata.n_vars), "dtype": str(adata.X.dtype),
        "classes": {c: int((labels == c).sum()) for c in u["classes"]},
        "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": _maxrss_mb(),
        "peak_rss_before_call_mb": rss_data, "chosen_size": int(u["chosen_size"]),
        "sizes": u["n_features"].tolist(), "mean_score": u["mean_score"].tolist(),
        "support": np.flatnonzero(adata.var["rfecv_support"].to_numpy()).tolist(),
    }
    if informative is not None:
        res["informative_selected"] = int(adata.var["rfecv_support"].to_numpy()[informative]
                                          .sum())
    if case == "c" and "CDH1" in adata.var_names:
        j = adata.var_names.get_loc("CDH1")
        res["cdh1"] = {"ranking": int(ranking[j]), "selected": bool(ranking[j] == 1),
                       "features_ranked_better": int((ranking < ranking[j]).sum())}
    out.write_text(json.dumps(res))


def worker_exact(case, X, labels, names, out: Path) -> None:
    """scikit-learn's RFECV, same pipeline and folds, liblinear solved to tol=1e-10: the
    reference semantics without the reference's solver tolerance."""
    from sklearn.feature_selection import RFECV
    from sklearn.model_selection import StratifiedKFold

    from mirror_genes.tl._rfecv import make_sklearn_estimator

    est = make_sklearn_estimator(1.0, True, 42).set_params(svc__tol=1e-10,
                                                            svc__max_iter=10**6)
    t0 = time.perf_counter()
    sel = RFECV(est, step=0.05, cv=StratifiedKFold(5), scoring="accuracy",
                min_features_to_select=1, importance_getter="named_steps.svc.coef_")
    sel.fit(np.asarray(X, dtype=np.float64), labels)
    wall = time.perf_counter() - t0
    res = {"case": case, "engine": "sklearn-exact", "n_samples": int(X.shape[0]),
           "n_features": int(X.shape[1]), "wall_s": wall, "peak_rss_mb": _maxrss_mb(),
           "chosen_size": int(sel.n_features_),
           "sizes": sel.cv_results_["n_features"].tolist(),
           "mean_score": sel.cv_results_["mean_test_score"].tolist(),
           "support": np.flatnonzero(sel.support_).tolist(),
           "ranking_sha": hashlib.sha256(
               np.asarray(sel.ranking_, dtype=np.int64).tobytes()).hexdigest()}
    out.write_text(json.dumps(res))


def run_worker(case: str, engine: str, tmp: Path) -> dict:
    out = tmp / f"{case}-{engine}.json"
    cmd = [sys.executable, __file__, "_worker", case, engine, str(out)]
    print(f"  running case {case} engine {engine} ...", flush=True)
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


# ----------------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------------

def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model, "platform": platform.platform(),
            "python": platform.python_version(), "loadavg_start": os.getloadavg()}


def compare(fast: dict, ref: dict) -> dict:
    a, b = set(fast["support"]), set(ref["support"])
    diff = np.abs(np.array(fast["mean_score"]) - np.array(ref["mean_score"]))
    return {"speedup": ref["wall_s"] / fast["wall_s"],
            "same_chosen_size": fast["chosen_size"] == ref["chosen_size"],
            "jaccard": len(a & b) / max(1, len(a | b)),
            "mean_score_max_abs_diff": float(diff.max()),
            "sizes_differing_gt_1e-9": int((diff > 1e-9).sum()), "n_sizes": int(diff.size)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="a,b,c", help="comma-separated subset of a,b,c")
    ap.add_argument("--skip-sklearn", action="store_true", help="fast engine only")
    ap.add_argument("--exact-reference", action="store_true",
                    help="also run scikit-learn with liblinear tol=1e-10 (slow) on a and c")
    ap.add_argument("--outdir", type=Path, default=HERE / "results")
    args = ap.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    args.outdir.mkdir(parents=True, exist_ok=True)
    tmp = args.outdir / "rfecv-tmp"
    tmp.mkdir(exist_ok=True)
    report = {"machine": machine(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "cases": {}}
    for case in cases:
        if case == "c" and not BRCA.is_dir():
            print(f"case c skipped: {BRCA} not found")
            continue
        entry = {"fast": run_worker(case, "fast", tmp)}
        if case != "b" and not args.skip_sklearn:
            entry["sklearn"] = run_worker(case, "sklearn", tmp)
            entry["comparison"] = compare(entry["fast"], entry["sklearn"])
        if case != "b" and args.exact_reference:
            entry["sklearn-exact"] = run_worker(case, "sklearn-exact", tmp)
            entry["comparison_exact"] = compare(entry["fast"], entry["sklearn-exact"])
            entry["comparison_exact"]["identical_ranking"] = (
                entry["fast"]["ranking_sha"] == entry["sklearn-exact"]["ranking_sha"])
        report["cases"][case] = entry
    report["loadavg_end"] = os.getloadavg()

    print()
    print(f"machine: {report['machine']['nproc']} x {report['machine']['cpu_model']}; "
          f"load average at start {report['machine']['loadavg_start'][0]:.2f}")
    head = (f"{'case':<5}{'engine':<9}{'n x p':>16}{'wall s':>10}{'peak MB':>9}"
            f"{'chosen':>8}{'speed-up':>10}{'Jaccard':>9}")
    print(head)
    print("-" * len(head))
    for case, entry in report["cases"].items():
        cmp_ = entry.get("comparison", {})
        for engine in ("fast", "sklearn", "sklearn-exact"):
            if engine not in entry:
                continue
            r = entry[engine]
            extra = (f"{cmp_['speedup']:>10.1f}{cmp_['jaccard']:>9.3f}"
                     if cmp_ and engine == "fast" else f"{'':>19}")
            engine = "exact" if engine == "sklearn-exact" else engine
            print(f"{case:<5}{engine:<9}{r['n_samples']:>7} x {r['n_features']:<6}"
                  f"{r['wall_s']:>10.2f}{r['peak_rss_mb']:>9.0f}{r['chosen_size']:>8}{extra}")
        if "cdh1" in entry["fast"]:
            print(f"      CDH1 ranking: fast {entry['fast']['cdh1']}, "
                  f"sklearn {entry.get('sklearn', {}).get('cdh1')}")
        if cmp_:
            print(f"      same chosen size: {cmp_['same_chosen_size']}; mean-score curve: "
                  f"max |diff| {cmp_['mean_score_max_abs_diff']:.4g} at "
                  f"{cmp_['sizes_differing_gt_1e-9']}/{cmp_['n_sizes']} sizes")
        if "comparison_exact" in entry:
            ce = entry["comparison_exact"]
            print(f"      vs scikit-learn at tol=1e-10: same chosen size "
                  f"{ce['same_chosen_size']}, Jaccard {ce['jaccard']:.3f}, curve max |diff| "
                  f"{ce['mean_score_max_abs_diff']:.3g}, identical ranking "
                  f"{ce['identical_ranking']}")
    path = args.outdir / f"rfecv-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)  # the per-worker files are merged into the JSON
    print(f"\nJSON: {path}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        worker(sys.argv[2], sys.argv[3], Path(sys.argv[4]))
    else:
        main()
