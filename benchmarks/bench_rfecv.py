"""RFE-CV benchmark: the fast engine against scikit-learn, in one run (results: docs/benchmarks.md).

    .venv/bin/python benchmarks/bench_rfecv.py [--case a|b|c] [--n 900] [--p 20000]
                                                [--repeat 3] [--skip-exact] [--json OUT]

Configuration everywhere: the MIRROR reference, ``RFECV(StandardScaler + LinearSVC(C=1,
squared hinge, l2, max_iter=5000), step=0.05, cv=StratifiedKFold(5), scoring="accuracy")``.

a. (default) synthetic n=900 samples (so 720 training samples per fold), p=20,000 (float32,
   log-normal-ish expression, 50 informative features, 2 classes), three engines:
   ``fast``  -- ``mirror_genes.tl.rfecv(engine="fast")`` (``--repeat`` runs; median and best);
   ``sklearn`` -- the reference configuration as it stands (liblinear tol=1e-4), i.e.
   ``rfecv(engine="sklearn")``: scikit-learn's RFECV on the same folds, input as float64;
   ``exact`` -- the same scikit-learn RFECV with liblinear solved to tol=1e-10.
   Prints the times, the speed-ups, and asserts that the fast engine's support (and
   ranking) is identical to the tol=1e-10 one.
b. transcript scale n=1,000, p=198,000 (float32): the fast engine only, wall time and peak RSS.
c. TCGA-BRCA (../shared/data/tcga-brca): IDC vs ILC on the Xena gene-level z-scores (NA ->
   gene median, clipped to [-10, 10]); the three engines, CDH1's rank.

Every engine runs in a fresh subprocess, which imports everything it needs before the clock
starts; the time is the wall time of the call alone, the peak memory ``VmHWM`` of that
process (data included; "before call" is the peak after building the data). The fast
engine's phase breakdown (CPU and wall seconds per phase) comes from one more, separate call
of the array-level engine with ``stats=``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
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


def build(case: str, n: int, p: int):
    if case == "a":
        return make_synthetic(n, p)
    if case == "b":
        return make_synthetic(1_000, 198_000)
    if case == "c":
        return load_brca()
    raise ValueError(case)


# ----------------------------------------------------------------------------------------------
# one engine in this process
# ----------------------------------------------------------------------------------------------

def _maxrss_mb() -> float:
    """Peak RSS of this process: ``VmHWM`` (``ru_maxrss`` would carry the parent's peak
    over from before the exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _sha(a) -> str:
    return hashlib.sha256(np.asarray(a, dtype=np.int64).tobytes()).hexdigest()


def _summary(case, X, labels, names, informative, support, ranking, chosen, sizes, mean):
    res = {"case": case, "n_samples": int(X.shape[0]), "n_features": int(X.shape[1]),
           "dtype": str(X.dtype), "chosen_size": int(chosen), "sizes": list(map(int, sizes)),
           "mean_score": list(map(float, mean)),
           "support": np.flatnonzero(support).tolist(), "ranking_sha": _sha(ranking),
           "classes": {c: int((labels == c).sum()) for c in np.unique(labels)}}
    if informative is not None:
        res["informative_selected"] = int(np.asarray(support)[informative].sum())
    if "CDH1" in names:
        j = names.index("CDH1")
        res["cdh1"] = {"ranking": int(ranking[j]), "selected": bool(ranking[j] == 1),
                       "features_ranked_better": int((np.asarray(ranking) < ranking[j]).sum())}
    return res


def worker_mirror(case, engine, n, p, repeat, out: Path) -> None:
    """``mirror_genes.tl.rfecv`` (the AnnData face), ``repeat`` times for the fast engine."""
    import anndata as ad
    import pandas as pd
    import sklearn.feature_selection  # noqa: F401  (imported before the clock starts)
    import sklearn.model_selection  # noqa: F401
    import sklearn.svm  # noqa: F401

    from mirror_genes._rfe import rfecv_array
    from mirror_genes.tl import rfecv

    X, labels, names, informative = build(case, n, p)
    adata = ad.AnnData(X, obs=pd.DataFrame({"label": labels},
                                           index=[f"s{i}" for i in range(X.shape[0])]),
                       var=pd.DataFrame(index=names))
    rss_data = _maxrss_mb()
    walls, cpus = [], []
    for _ in range(repeat if engine == "fast" else 1):
        t0, c0 = time.perf_counter(), time.process_time()
        rfecv(adata, "label", engine=engine, progress=False)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    u = adata.uns["rfecv"]
    res = _summary(case, X, labels, names, informative, adata.var["rfecv_support"].to_numpy(),
                   adata.var["rfecv_ranking"].to_numpy(), u["chosen_size"], u["n_features"],
                   u["mean_score"])
    res.update(engine=engine, wall_s=float(np.median(walls)), wall_best_s=min(walls),
               walls_s=walls, cpu_s=float(np.median(cpus)), peak_rss_mb=_maxrss_mb(),
               peak_rss_before_call_mb=rss_data)
    if engine == "fast":  # phase breakdown from one more call of the array-level engine
        stats: dict = {}
        t0 = time.perf_counter()
        rfecv_array(X, labels, progress=False, stats=stats)
        stats["wall_s"] = time.perf_counter() - t0
        res["stats"] = stats
    out.write_text(json.dumps(res))


def worker_exact(case, n, p, out: Path) -> None:
    """scikit-learn's RFECV, same pipeline and folds, liblinear solved to tol=1e-10: the
    reference semantics without the reference's solver tolerance."""
    from sklearn.feature_selection import RFECV
    from sklearn.model_selection import StratifiedKFold

    from mirror_genes.tl._rfecv import make_sklearn_estimator

    X, labels, names, informative = build(case, n, p)
    X64 = np.asarray(X, dtype=np.float64)
    est = make_sklearn_estimator(1.0, True, 42).set_params(svc__tol=1e-10,
                                                            svc__max_iter=10**6)
    sel = RFECV(est, step=0.05, cv=StratifiedKFold(5), scoring="accuracy",
                min_features_to_select=1, importance_getter="named_steps.svc.coef_")
    t0, c0 = time.perf_counter(), time.process_time()
    sel.fit(X64, labels)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    res = _summary(case, X, labels, names, informative, sel.support_, sel.ranking_,
                   sel.n_features_, sel.cv_results_["n_features"],
                   sel.cv_results_["mean_test_score"])
    res.update(engine="exact", wall_s=wall, wall_best_s=wall, cpu_s=cpu,
               peak_rss_mb=_maxrss_mb())
    out.write_text(json.dumps(res))


def run_worker(args: list[str], tmp: Path, name: str) -> dict:
    out = tmp / f"{name}.json"
    print(f"  running {name} ...", flush=True)
    subprocess.run([sys.executable, __file__, "_worker", *args, str(out)], check=True)
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
    import scipy
    import sklearn
    return {"nproc": os.cpu_count(), "cpu_model": model, "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "sklearn": sklearn.__version__,
            "loadavg_start": os.getloadavg()}


def compare(fast: dict, ref: dict) -> dict:
    a, b = set(fast["support"]), set(ref["support"])
    diff = np.abs(np.array(fast["mean_score"]) - np.array(ref["mean_score"]))
    return {"speedup": ref["wall_s"] / fast["wall_s"],
            "speedup_vs_best": ref["wall_s"] / fast["wall_best_s"],
            "same_chosen_size": fast["chosen_size"] == ref["chosen_size"],
            "identical_support": a == b, "identical_ranking": fast["ranking_sha"] ==
            ref["ranking_sha"], "jaccard": len(a & b) / max(1, len(a | b)),
            "mean_score_max_abs_diff": float(diff.max()),
            "sizes_differing_gt_1e-9": int((diff > 1e-9).sum()), "n_sizes": int(diff.size)}


def _print(report: dict) -> None:
    m = report["machine"]
    print(f"\nmachine: {m['nproc']} x {m['cpu_model']}; load average {m['loadavg_start'][0]:.2f} "
          f"at start, {report['loadavg_end'][0]:.2f} at end")
    print(f"{'engine':<9}{'n x p':>16}{'wall s':>10}{'best s':>9}{'cpu s':>9}{'peak MB':>9}"
          f"{'chosen':>8}")
    for name, r in report["engines"].items():
        print(f"{name:<9}{r['n_samples']:>7} x {r['n_features']:<6}{r['wall_s']:>10.2f}"
              f"{r['wall_best_s']:>9.2f}{r['cpu_s']:>9.2f}{r['peak_rss_mb']:>9.0f}"
              f"{r['chosen_size']:>8}")
    fast = report["engines"]["fast"]
    if "stats" in fast:
        st = fast["stats"]
        sec = st["seconds"]
        phases = [k for k in sec if not k.endswith("_cpu")]
        print("fast engine phases (wall / cpu s): " + ", ".join(
            f"{k} {sec[k]:.2f}/{sec[k + '_cpu']:.2f}" for k in phases)
            + f"; total {st['wall_s']:.2f}; {st['passes']} passes, {st['solves']} solves, "
              f"{st['newton_steps']} Newton steps, {st['refinements']} refinements, "
              f"{st['uncertified']} uncertified rounds")
    for name, c in report["comparisons"].items():
        print(f"fast vs {name}: {c['speedup']:.1f}x (median fast run; {c['speedup_vs_best']:.1f}x"
              f" vs the best), same chosen size {c['same_chosen_size']}, identical support "
              f"{c['identical_support']}, identical ranking {c['identical_ranking']}, curve max "
              f"|diff| {c['mean_score_max_abs_diff']:.3g} at {c['sizes_differing_gt_1e-9']}/"
              f"{c['n_sizes']} sizes")
    if "cdh1" in fast:
        print("CDH1: " + ", ".join(f"{k} {r.get('cdh1')}" for k, r in report["engines"].items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", default="a", choices=["a", "b", "c"])
    ap.add_argument("--n", type=int, default=900, help="case a: samples (5 folds train on 4/5)")
    ap.add_argument("--p", type=int, default=20_000, help="case a: features")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the fast engine")
    ap.add_argument("--skip-sklearn", action="store_true", help="no reference-config run")
    ap.add_argument("--skip-exact", action="store_true", help="no tol=1e-10 run (minutes)")
    ap.add_argument("--json", type=Path, default=None, metavar="OUT", help="write the report")
    args = ap.parse_args()
    if args.case == "c" and not BRCA.is_dir():
        sys.exit(f"case c: {BRCA} not found")
    report = {"machine": machine(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "case": args.case,
              "engines": {}, "comparisons": {}}
    common = [args.case, str(args.n), str(args.p)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        eng = report["engines"]
        eng["fast"] = run_worker(["mirror", *common, "fast", str(args.repeat)], tmp, "fast")
        if args.case != "b" and not args.skip_sklearn:
            eng["sklearn"] = run_worker(["mirror", *common, "sklearn", "1"], tmp, "sklearn")
        if args.case != "b" and not args.skip_exact:
            eng["exact"] = run_worker(["exact", *common], tmp, "exact")
    for name in ("sklearn", "exact"):
        if name in report["engines"]:
            report["comparisons"][name] = compare(report["engines"]["fast"],
                                                  report["engines"][name])
    report["loadavg_end"] = os.getloadavg()
    _print(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
        print(f"\nJSON: {args.json}")
    if "exact" in report["comparisons"]:
        c = report["comparisons"]["exact"]
        assert c["identical_support"], "fast engine support differs from scikit-learn tol=1e-10"
        print("asserted: the fast engine's support is identical to scikit-learn's at tol=1e-10")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        kind, case, n, p, *rest = sys.argv[2:]
        if kind == "mirror":
            worker_mirror(case, rest[0], int(n), int(p), int(rest[1]), Path(rest[2]))
        else:
            worker_exact(case, int(n), int(p), Path(rest[0]))
    else:
        main()
