"""RFE-CV: exact-semantics parity with scikit-learn, the engine and its certificate, the dual
solver, inputs and outputs."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.datasets import make_classification
from sklearn.feature_selection import RFECV
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from mirror_genes._errors import LabelError, SelectionError
from mirror_genes._rfe import _certify as C_
from mirror_genes._rfe import _fast as F
from mirror_genes._rfe import _gram as G
from mirror_genes._rfe import _inputs as I
from mirror_genes._rfe import _layout as L
from mirror_genes._rfe import _rounds as R
from mirror_genes._rfe import _track as T_
from mirror_genes._rfe import rfecv_array
from mirror_genes._rfe._pass import coef_pass
from mirror_genes.tl._rfecv import elimination_sizes, make_sklearn_estimator, rfecv
from mirror_genes.tl._svm import fit_linear_svc, kkt_violation, ovr_targets, solve_dual


def _data(seed=0, n=120, p=300, k=2, informative=10):
    X, y = make_classification(n_samples=n, n_features=p, n_informative=informative,
                               n_redundant=5, n_classes=k, n_clusters_per_class=1,
                               random_state=seed)
    return X, np.array([f"c{v}" for v in y])


def _expression_like(seed, n, p, informative=20):
    """log2(1 + 2^z) expression with a per-sample library-size factor and ``informative``
    genes shifted in class 1: as in real cohorts with many more genes than samples, a
    quarter of the samples lie far outside the margin."""
    rng = np.random.default_rng(seed)
    codes = (rng.random(n) < 0.4).astype(np.int64)
    z = rng.normal(1.5, 1.5, p) + rng.normal(0, 0.25, (n, 1)) + \
        rng.uniform(0.4, 1.2, p) * rng.standard_normal((n, p))
    X = np.log2(1.0 + np.exp2(z))
    X[:, :informative] += 0.6 * codes[:, None]
    return X, codes


def _adata(X, labels, key="label"):
    obs = pd.DataFrame({key: labels}, index=[f"s{i}" for i in range(X.shape[0])])
    var = pd.DataFrame(index=[f"g{j}" for j in range(X.shape[1])])
    return ad.AnnData(X if sp.issparse(X) else np.asarray(X), obs=obs, var=var)


def _exact_sklearn(X, labels, *, step=0.05, cv=5, scoring="accuracy", min_features=1,
                   scale=True):
    """scikit-learn's RFECV with the reference pipeline, liblinear solved to tol 1e-10: the
    same semantics as the fast engine, computed by scikit-learn."""
    est = make_sklearn_estimator(1.0, scale).set_params(svc__tol=1e-10, svc__max_iter=10**6)
    cv = StratifiedKFold(cv) if isinstance(cv, int) else cv
    return RFECV(est, step=step, cv=cv, scoring=scoring, min_features_to_select=min_features,
                 importance_getter="named_steps.svc.coef_").fit(X, labels)


def _jaccard(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return (a & b).sum() / max(1, (a | b).sum())


# ------------------------------------------------------------------------------------------
# parity with scikit-learn
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("seed", "k", "p"), [(0, 2, 300), (1, 3, 400), (2, 2, 400),
                                              (3, 3, 300)])
def test_parity_with_sklearn_exact_solver(seed, k, p):
    X, labels = _data(seed, p=p, k=k)
    a = _adata(X, labels)
    rfecv(a, progress=False)
    sel = _exact_sklearn(X, labels)
    u = a.uns["rfecv"]
    assert u["chosen_size"] == sel.n_features_
    np.testing.assert_array_equal(u["n_features"], sel.cv_results_["n_features"])
    np.testing.assert_allclose(u["mean_score"], sel.cv_results_["mean_test_score"],
                               rtol=0, atol=1e-9)
    np.testing.assert_allclose(u["std_score"], sel.cv_results_["std_test_score"],
                               rtol=0, atol=1e-9)
    # well-conditioned (the dual is strongly convex): identical support and ranking
    np.testing.assert_array_equal(a.var["rfecv_support"].to_numpy(), sel.support_)
    np.testing.assert_array_equal(a.var["rfecv_ranking"].to_numpy(), sel.ranking_)


def test_parity_with_sklearn_on_tracked_grams():
    """Expression-like data, where the Grams are kept on the samples near the margin only
    (``_track``): the same answer as scikit-learn solved exactly."""
    X, codes = _expression_like(0, n=120, p=2000)
    labels = np.where(codes == 1, "B", "A")
    st = {}
    res = rfecv_array(X, labels, progress=False, stats=st)
    assert st["tracked"][0] < 0.75 * st["train"][0]
    sel = _exact_sklearn(X, labels)
    assert res.chosen_size == sel.n_features_
    np.testing.assert_array_equal(res.support, sel.support_)
    np.testing.assert_array_equal(res.ranking, sel.ranking_)
    np.testing.assert_allclose(res.mean_score[::-1], sel.cv_results_["mean_test_score"][::-1],
                               rtol=0, atol=1e-9)


@pytest.mark.parametrize("scoring", ["balanced_accuracy", "f1_macro"])
def test_parity_other_scorings_int_step_unscaled(scoring):
    X, labels = _data(5, p=250, k=3)
    labels[:12] = "c0"  # unbalanced classes make the scorings differ from accuracy
    a = _adata(X, labels)
    rfecv(a, scoring=scoring, step=20, scale=False, min_features=3, progress=False)
    sel = _exact_sklearn(X, labels, step=20, scoring=scoring, min_features=3, scale=False)
    u = a.uns["rfecv"]
    assert u["chosen_size"] == sel.n_features_
    np.testing.assert_allclose(u["mean_score"], sel.cv_results_["mean_test_score"],
                               rtol=0, atol=1e-9)
    assert _jaccard(a.var["rfecv_support"], sel.support_) >= 0.95


def test_parity_with_reference_tolerance_in_dual_regime():
    """Against the reference configuration itself (liblinear tol=1e-4): while every fit has
    more features than training samples LinearSVC solves the dual, accurately enough that the
    curves agree; below that liblinear's primal solver stops ~1% away from the optimum (see
    docs/rfecv.md), so this check keeps min_features above the training-set size."""
    for seed, k in [(0, 2), (1, 3), (4, 2)]:
        X, labels = _data(seed, p=400, k=k)
        fast = rfecv(_adata(X, labels), min_features=100, progress=False, copy=True)
        ref = rfecv(_adata(X, labels), min_features=100, engine="sklearn", progress=False,
                    copy=True)
        uf, ur = fast.uns["rfecv"], ref.uns["rfecv"]
        assert uf["chosen_size"] == ur["chosen_size"]
        diff = np.abs(uf["mean_score"] - ur["mean_score"])
        one_sample = 1.0 / 24 / 5 + 1e-12  # one test sample of one fold, in the mean
        assert diff.max() <= one_sample and np.count_nonzero(diff > 1e-9) <= 3
        assert _jaccard(fast.var["rfecv_support"], ref.var["rfecv_support"]) >= 0.95


def test_sklearn_engine_is_sklearn():
    X, labels = _data(7, p=200, k=2)
    a = _adata(X, labels)
    rfecv(a, engine="sklearn", progress=False)
    sel = RFECV(make_sklearn_estimator(1.0, True, 42), step=0.05, cv=StratifiedKFold(5),
                scoring="accuracy", min_features_to_select=1,
                importance_getter="named_steps.svc.coef_").fit(X, labels)
    u = a.uns["rfecv"]
    assert u["chosen_size"] == sel.n_features_
    np.testing.assert_array_equal(u["mean_score"], sel.cv_results_["mean_test_score"])
    np.testing.assert_array_equal(u["fold_scores"][2], sel.cv_results_["split2_test_score"])
    np.testing.assert_array_equal(a.var["rfecv_support"].to_numpy(), sel.support_)
    np.testing.assert_array_equal(a.var["rfecv_ranking"].to_numpy(), sel.ranking_)
    assert u["params"]["engine"] == "sklearn"


def test_cv_splitter_and_explicit_folds():
    X, labels = _data(8, p=150, k=2)
    splitter = StratifiedKFold(4, shuffle=True, random_state=3)
    a = rfecv(_adata(X, labels), cv=splitter, progress=False, copy=True)
    folds = list(splitter.split(X, labels))
    b = rfecv(_adata(X, labels), cv=folds, progress=False, copy=True)
    sel = _exact_sklearn(X, labels, cv=folds)
    for res in (a, b):
        np.testing.assert_allclose(res.uns["rfecv"]["mean_score"],
                                   sel.cv_results_["mean_test_score"], atol=1e-9, rtol=0)
        np.testing.assert_array_equal(res.var["rfecv_support"].to_numpy(), sel.support_)
    assert a.uns["rfecv"]["fold_scores"].shape == (4, len(sel.cv_results_["n_features"]))


def test_elimination_sizes_match_rfe():
    assert elimination_sizes(300, 0.05, 1) == [*range(300, 0, -15), 1]
    assert elimination_sizes(10, 3, 2) == [10, 7, 4, 2]
    assert elimination_sizes(10, 0.01, 8) == [10, 9, 8]          # int(max(1, 0.1)) == 1
    assert elimination_sizes(5, 2, 9) == [5]                       # min_features > p


# ------------------------------------------------------------------------------------------
# the array-level engine: layout, per-fold scaling, Grams, certificate
# ------------------------------------------------------------------------------------------

def _engine(X, codes, folds, precision="float32", scale=True):
    """Layout, context and runs of the fast engine with their Grams built (one thread)."""
    n_classes = int(codes.max()) + 1
    lay = L.sample_layout(folds, X.shape[0])
    Xt, const, center, dabs = I.feature_major(X, lay.perm, "X")
    ctx, runs = F.setup(Xt, center, dabs, const, codes, n_classes, lay, C=1.0, scale=scale,
                        precision=precision, pool=F._Inline(), threads=1)
    F._init_grams(ctx, runs)
    return lay, ctx, runs


def _direct_gram(X, lay, run, cols=None):
    """The run's Gram on its tracked samples, from scikit-learn's scaler."""
    train = lay.perm[run.layout.train]
    Z = StandardScaler().fit_transform(X[train].astype(np.float64))
    Z = Z if cols is None else Z[:, cols]
    Z = Z[run.track]
    return Z @ Z.T + 1.0


def test_stratified_folds_match_sklearn():
    rng = np.random.default_rng(0)
    for _ in range(60):
        n, k, c = int(rng.integers(20, 200)), int(rng.integers(2, 7)), int(rng.integers(2, 5))
        codes = rng.integers(0, c, n)
        if np.bincount(codes, minlength=c).min() < k:
            continue
        ours = list(I.StratifiedFolds(k).split(None, codes))
        ref = list(StratifiedKFold(k).split(np.zeros((n, 1)), codes))
        for (a, b), (c_, d) in zip(ours, ref, strict=True):
            np.testing.assert_array_equal(a, c_)
            np.testing.assert_array_equal(b, d)


def test_sample_layout_segments():
    codes = np.arange(53) % 3
    folds = list(StratifiedKFold(5).split(np.zeros((53, 1)), codes))
    lay = L.sample_layout(folds, 53)
    assert sorted(lay.perm) == list(range(53))
    assert lay.runs[0].segments == [(0, 53)]
    for (tr, te), run in zip(folds, lay.runs[1:], strict=True):
        assert len(run.segments) <= 2
        np.testing.assert_array_equal(np.sort(lay.perm[run.train]), np.sort(tr))
        np.testing.assert_array_equal(np.sort(lay.perm[run.test]), np.sort(te))
        assert sum(b - a for a, b in run.segments) == tr.size


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_fold_gram_uses_training_samples_only(precision):
    rng = np.random.default_rng(0)
    X = rng.lognormal(1.0, 0.7, size=(40, 25)).astype(np.float32)
    X[:8, 3] += 50.0  # test samples of the first fold are extreme in feature 3
    codes = np.arange(40) % 2
    folds = list(StratifiedKFold(5).split(X, codes))
    lay, _ctx, runs = _engine(X, codes, folds, precision)
    tol = 1e-5 if precision == "float32" else 1e-12
    for run in runs:
        train = lay.perm[run.layout.train]
        scaler = StandardScaler().fit(X[train].astype(np.float64))
        np.testing.assert_allclose(run.mu, scaler.mean_, rtol=1e-12)
        np.testing.assert_allclose(run.inv, 1.0 / scaler.scale_, rtol=1e-12)
        K = _direct_gram(X, lay, run)
        np.testing.assert_allclose(run.K, K, rtol=0, atol=tol * np.abs(K).max())
        if run.layout.test.size:
            Zte = scaler.transform(X[lay.perm[run.layout.test]].astype(np.float64))
            np.testing.assert_allclose(run.test_sq, (Zte ** 2).sum(axis=1), rtol=1e-5)
    # leaking the test samples into the scaler would give a different Gram
    run = runs[1]
    Zleak = StandardScaler().fit(X.astype(np.float64)).transform(X[lay.perm[run.layout.train]])
    Zleak = Zleak[run.track]
    assert np.abs(run.K - 1.0 - Zleak @ Zleak.T).max() > 1e-3


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_downdate_and_refresh_match_direct_gram(precision):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 200))
    X[:, 7] = 2.0  # constant: zero after scaling, never in the Gram
    codes = np.arange(30) % 3
    folds = [(np.arange(6, 30), np.arange(6))]
    lay, ctx, runs = _engine(X, codes, folds, precision)
    run = runs[1]
    assert run.inv[7] == 0.0
    tol = 1e-5 if precision == "float32" else 1e-10
    for n_remove in (50, 60, 60, 25):  # the last rounds trigger a rebuild from scratch
        act = np.flatnonzero(run.active)
        run.removed = act[np.argsort(rng.random(act.size))[:n_remove]]
        F._eliminate(ctx, [run])
        K = _direct_gram(X, lay, run, np.flatnonzero(run.active & (np.arange(200) != 7)))
        np.testing.assert_allclose(run.K, K, rtol=0, atol=tol * np.abs(K).max())
    assert run.exact  # the last rebuild (few features left) is float64


def test_tracked_gram_and_widening_match_direct_gram(monkeypatch):
    """Grams on the samples near the final fit's margin, and rows added from the data."""
    monkeypatch.setattr(T_, "TRACK_ALL_ABOVE", 1.0)
    monkeypatch.setattr(T_, "WIDEN_LIMIT", 1.0)
    X, codes = _expression_like(0, n=100, p=600)
    folds = list(StratifiedKFold(4).split(X, codes))
    lay, ctx, runs = _engine(X, codes, folds)
    assert all(run.track.size < run.layout.train.size for run in runs)
    final = runs[0]
    f = final.K @ final.beta[final.track]
    assert np.all(final.Y[final.track, 0] * f < T_.BAND)
    for run in runs:
        K = _direct_gram(X, lay, run)
        np.testing.assert_allclose(run.K, K, rtol=0, atol=1e-5 * np.abs(K).max())
    run = runs[2]
    run.active[::3] = False     # rows are computed over the active features only
    new = np.setdiff1d(np.arange(run.layout.train.size), run.track)[:3]
    assert new.size == 3
    version = run.version
    G.widen(ctx.Xt, run, new)
    assert run.version > version and np.array_equal(run.track[-3:], new)
    K = _direct_gram(X, lay, run, np.flatnonzero(run.active))
    np.testing.assert_allclose(run.K[:, -3:], K[:, -3:], rtol=0, atol=1e-5 * np.abs(K).max())
    np.testing.assert_array_equal(run.K[-3:], run.K[:, -3:].T)


def test_samples_missing_from_the_gram_still_give_the_exact_answer(monkeypatch):
    """Tracking fewer samples than the margin violators costs rows from the data, never a
    different answer."""
    X, labels = _expression_like(2, n=120, p=1500)
    ref = rfecv_array(X, labels, progress=False, precision="float64", pipeline=False)
    clean = T_.guess

    def wrong(final, run, C):   # every third sample looks far outside the margin
        t = clean(final, run, C)
        t[::3] += 5.0
        return t

    monkeypatch.setattr(T_, "guess", wrong)
    monkeypatch.setattr(T_, "TRACK_ALL_ABOVE", 1.0)
    st = {}
    res = rfecv_array(X, labels, progress=False, stats=st)
    np.testing.assert_array_equal(res.ranking, ref.ranking)
    np.testing.assert_array_equal(res.fold_scores, ref.fold_scores)
    assert st["widened"] > 0 and st["uncertified"] == 0


def test_certificate_bounds_the_true_error():
    """The duality-gap bound holds for a perturbed dual point, and is tight-ish."""
    X, labels = _data(11, n=90, p=150, k=2)
    codes = (labels == "c1").astype(np.int64)
    lay, ctx, runs = _engine(X, codes, [(np.arange(90), np.arange(0))], "float64")
    run = runs[1]
    sol = solve_dual(run.K, run.Y[run.track], C=1.0, kernel_has_intercept=True)
    train = lay.perm[run.layout.train]
    Z = StandardScaler().fit_transform(X[train])
    beta_star = np.zeros((train.size, 1))
    beta_star[run.track] = sol.beta
    w_star = Z.T @ beta_star[:, 0]
    assert (run.Y[:, 0] * (Z @ w_star + beta_star.sum()) >= 1.0 - 1e-9).sum() >= \
        train.size - run.track.size  # the untracked samples are outside the margin
    rng = np.random.default_rng(0)
    for scale in (1e-3, 1e-6, 1e-9):
        beta = beta_star * (1.0 + scale * rng.normal(size=beta_star.shape))
        beta[beta * run.Y < 0] = 0.0
        run.beta = beta
        res = coef_pass(ctx.Xt, ctx.center, ctx.dabs, [(run, beta, run.active)], F._Inline(), 1)
        chk = R.check(ctx, run, res, res.cols[0], 0, beta, run.active)
        err = np.abs(res.W[:, 0] - w_star).max()
        assert err <= chk.eps[0]
        assert chk.eps[0] < 1e3 * max(err, 1e-12)


def test_smallest_matches_stable_argsort():
    rng = np.random.default_rng(3)
    for _ in range(50):
        imp = rng.integers(0, 6, size=40).astype(float)
        k = int(rng.integers(0, 41))
        np.testing.assert_array_equal(C_.smallest(imp, k),
                                      np.sort(np.argsort(imp, kind="stable")[:k]))


def test_float32_and_float64_grams_identical_and_certified():
    X, labels = _data(6, n=150, p=2500, k=2, informative=15)
    st32, st64 = {}, {}
    a = rfecv_array(X.astype(np.float32), labels, progress=False, stats=st32)
    b = rfecv_array(X.astype(np.float32), labels, progress=False, precision="float64",
                    stats=st64)
    np.testing.assert_array_equal(a.ranking, b.ranking)
    np.testing.assert_array_equal(a.fold_scores, b.fold_scores)
    assert st32["refinements"] > 0 and st32["uncertified"] == 0 == st64["uncertified"]


def test_bad_preconditioner_still_gives_the_exact_answer(monkeypatch):
    """A float32 Gram that is far off only costs passes (or a switch to float64)."""
    X, labels = _data(8, n=120, p=600, k=3)
    ref = rfecv_array(X, labels, progress=False, precision="float64")
    rng = np.random.default_rng(0)
    clean = G.train_rows

    def noisy(Xb, run, mu, inv, exact):
        Z = clean(Xb, run, mu, inv, exact)
        if not exact:
            Z *= (1.0 + 0.05 * rng.standard_normal(Z.shape)).astype(Z.dtype)
        return Z

    monkeypatch.setattr(G, "train_rows", noisy)
    st = {}
    res = rfecv_array(X, labels, progress=False, stats=st)
    np.testing.assert_array_equal(res.ranking, ref.ranking)
    np.testing.assert_array_equal(res.fold_scores, ref.fold_scores)
    assert st["to_exact"] > 0


def test_overlapping_explicit_folds_gather_path():
    """Folds whose test sets overlap (many training segments, or gathered columns)."""
    X, labels = _data(9, n=100, p=200, k=2)
    rng = np.random.default_rng(2)
    folds = []
    for _ in range(4):
        test = np.sort(rng.choice(100, 30, replace=False))
        folds.append((np.setdiff1d(np.arange(100), test), test))
    lay = L.sample_layout(folds, 100)
    assert any(run.segments is None or len(run.segments) > 2 for run in lay.runs[1:])
    res = rfecv_array(X, labels, cv=folds, progress=False)
    sel = _exact_sklearn(X, labels, cv=folds)
    np.testing.assert_allclose(res.mean_score, sel.cv_results_["mean_test_score"], atol=1e-9,
                               rtol=0)
    np.testing.assert_array_equal(res.ranking, sel.ranking_)


def test_array_api_matches_anndata_face():
    X, labels = _data(10, p=120, k=3)
    res = rfecv_array(X, labels, progress=False)
    a = _adata(X, labels)
    rfecv(a, progress=False)
    np.testing.assert_array_equal(res.support, a.var["rfecv_support"].to_numpy())
    np.testing.assert_array_equal(res.ranking, a.var["rfecv_ranking"].to_numpy())
    u = a.uns["rfecv"]
    uns = res.as_uns(label_key="label", layer="X")
    assert set(uns) == set(u) and uns["params"] == u["params"]
    np.testing.assert_array_equal(uns["fold_scores"], u["fold_scores"])
    with pytest.raises(SelectionError, match="repeats sample indices"):
        rfecv_array(X, labels, cv=[(np.r_[0:60, 0], np.r_[60:120])], progress=False)


# ------------------------------------------------------------------------------------------
# the dual solver
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("n", "p", "k", "C"), [(60, 200, 2, 1.0), (100, 30, 2, 0.1),
                                                (90, 300, 3, 1.0), (150, 20, 3, 10.0),
                                                (80, 500, 2, 0.01)])
def test_solver_matches_liblinear_and_kkt(n, p, k, C):
    X, y = make_classification(n_samples=n, n_features=p, n_informative=min(10, p // 2),
                               n_classes=k, n_clusters_per_class=1, random_state=n + p)
    X = StandardScaler().fit_transform(X)
    coef, intercept, classes = fit_linear_svc(X, y, C=C)
    ref = LinearSVC(C=C, loss="squared_hinge", penalty="l2", tol=1e-10, max_iter=10**6,
                    dual=True).fit(X, y)
    np.testing.assert_allclose(coef, ref.coef_, rtol=0, atol=1e-5)
    np.testing.assert_allclose(intercept, ref.intercept_, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(classes, ref.classes_)
    Y = ovr_targets(np.searchsorted(classes, y), classes.size)
    K = X @ X.T
    sol = solve_dual(K, Y, C=C)
    assert sol.converged
    for j in range(Y.shape[1]):
        assert kkt_violation(K, Y[:, j], sol.beta[:, j], C=C) < 1e-9
        alpha = sol.beta[:, j] * Y[:, j]
        assert alpha.min() >= 0.0


def test_solver_warm_start_and_bad_active_guess():
    X, y = make_classification(n_samples=80, n_features=120, random_state=4)
    K = StandardScaler().fit_transform(X)
    K = K @ K.T
    Y = ovr_targets(y, 2)
    ref = solve_dual(K, Y, C=0.5)
    rng = np.random.default_rng(0)
    for _ in range(3):
        guess = rng.random((80, 1)) < 0.5
        beta0 = rng.normal(size=(80, 1))
        sol = solve_dual(K, Y, C=0.5, beta0=beta0, active0=guess)
        assert sol.converged
        np.testing.assert_allclose(sol.beta, ref.beta, rtol=0, atol=1e-10)


def test_bordered_solver_matches_direct():
    """Active sets close to the factored one reuse its Cholesky factor (bordering)."""
    from mirror_genes._rfe import _svm as SV

    rng = np.random.default_rng(0)
    Z = rng.standard_normal((200, 500))
    Kb = Z @ Z.T + 1.0
    base = np.sort(rng.choice(200, 120, replace=False))
    cache = {}
    SV._factor(Kb, base, 0.5, cache, 1)
    for _ in range(20):
        gone = rng.choice(base, rng.integers(0, 4), replace=False)
        new = rng.choice(np.setdiff1d(np.arange(200), base), rng.integers(0, 4), replace=False)
        idx = np.sort(np.union1d(np.setdiff1d(base, gone), new))
        solve, A = SV._solver(Kb, idx, 0.5, cache, 1)
        assert A is None or np.array_equal(idx, base)
        b = rng.standard_normal(idx.size)
        direct = np.linalg.solve(Kb[np.ix_(idx, idx)] + 0.5 * np.eye(idx.size), b)
        np.testing.assert_allclose(solve(b), direct, rtol=1e-9, atol=1e-12)
    # solve_dual with a cache: the second, nearby problem is solved exactly too
    X, y = make_classification(n_samples=90, n_features=300, random_state=5)
    X = StandardScaler().fit_transform(X)
    Y = ovr_targets(y, 2)
    caches = [{}]
    K1 = X @ X.T
    first = solve_dual(K1, Y, C=1.0, caches=caches, version=1)
    K2 = X[:, 5:] @ X[:, 5:].T
    sol = solve_dual(K2, Y, C=1.0, beta0=first.beta, caches=caches, version=2)
    assert sol.converged and kkt_violation(K2, Y[:, 0], sol.beta[:, 0]) < 1e-9


# ------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------

def test_nan_cells_raise_selection_error():
    X, labels = _data(0, p=50)
    X[3, 4] = np.nan
    X[5, 6] = np.nan
    for engine in ("fast", "sklearn"):
        with pytest.raises(SelectionError, match=r"2 NaN/infinite cells.*impute or drop"):
            rfecv(_adata(X, labels), engine=engine, progress=False)


def test_single_class_and_missing_labels_raise_label_error():
    X, labels = _data(0, p=50)
    with pytest.raises(LabelError, match="single class"):
        rfecv(_adata(X, np.array(["a"] * 120)), progress=False)
    obj = labels.astype(object)
    obj[[1, 2, 3]] = np.nan
    with pytest.raises(LabelError, match="3 of 120 samples have no 'label' label"):
        rfecv(_adata(X, obj), progress=False)
    with pytest.raises(LabelError, match="'subtype' not in adata.obs"):
        rfecv(_adata(X, labels), "subtype", progress=False)


def test_small_class_raises_selection_error():
    X, labels = _data(0, p=50)
    labels = labels.astype(object)
    labels[:3] = "rare"
    with pytest.raises(SelectionError, match="'rare' has 3"):
        rfecv(_adata(X, labels), progress=False)


def test_bad_parameters():
    X, labels = _data(0, p=50)
    a = _adata(X, labels)
    for kwargs in ({"step": 0}, {"step": 1.5}, {"C": 0}, {"scoring": "auc"},
                   {"engine": "gpu"}, {"min_features": 0}, {"estimator": "rf"}):
        with pytest.raises(ValueError):
            rfecv(a, progress=False, **kwargs)
    with pytest.raises(SelectionError, match="at least 2 features"):
        rfecv(_adata(X[:, :1], labels), progress=False)


def test_constant_features_warn_and_go_first():
    X, labels = _data(2, p=60)
    X[:, [5, 9, 40]] = 3.0
    a = _adata(X, labels)
    with pytest.warns(UserWarning, match="^3 constant features"):
        rfecv(a, step=2, progress=False)
    ranking = a.var["rfecv_ranking"].to_numpy()
    # eliminated in the first round (constant features have zero weight)
    assert set(np.flatnonzero(ranking == ranking.max())) <= {5, 9, 40}
    assert (ranking[[5, 9, 40]] >= ranking.max() - 1).all()
    b = _adata(X, labels)
    with pytest.warns(UserWarning, match="^3 constant features"):
        rfecv(b, step=2, engine="sklearn", progress=False)
    assert _jaccard(a.var["rfecv_support"], b.var["rfecv_support"]) >= 0.9


def test_sparse_float32_and_layer_inputs_agree():
    X, labels = _data(3, p=120)
    X = np.abs(X).astype(np.float32)
    dense = rfecv(_adata(X, labels), progress=False, copy=True)
    sparse_ = rfecv(_adata(sp.csr_matrix(X), labels), progress=False, copy=True)
    layered = _adata(np.zeros_like(X), labels)
    layered.layers["counts"] = X
    rfecv(layered, layer="counts", progress=False)
    fortran = rfecv(_adata(np.asfortranarray(X), labels), progress=False, copy=True)
    for other in (sparse_, layered, fortran):
        np.testing.assert_array_equal(other.var["rfecv_ranking"], dense.var["rfecv_ranking"])
        np.testing.assert_array_equal(other.uns["rfecv"]["mean_score"],
                                      dense.uns["rfecv"]["mean_score"])
    assert layered.uns["rfecv"]["params"]["layer"] == "counts"


# ------------------------------------------------------------------------------------------
# outputs
# ------------------------------------------------------------------------------------------

def test_outputs_written_and_h5ad_roundtrip(tmp_path):
    X, labels = _data(1, p=80, k=3)
    a = _adata(X, labels)
    assert rfecv(a, key_added="sel", progress=False) is None
    assert a.var["sel_support"].dtype == bool
    assert np.issubdtype(a.var["sel_ranking"].dtype, np.integer)
    u = a.uns["sel"]
    sizes = u["n_features"]
    assert np.all(np.diff(sizes) > 0) and sizes[-1] == 80 and sizes[0] == 1
    assert u["fold_scores"].shape == (5, sizes.size)
    assert u["mean_score"].shape == u["std_score"].shape == sizes.shape
    assert int(a.var["sel_support"].sum()) == u["chosen_size"]
    assert (a.var["sel_ranking"] == 1).sum() == u["chosen_size"]
    assert u["classes"] == ["c0", "c1", "c2"]
    assert u["params"]["engine"] == "fast" and u["params"]["cv"] == 5
    path = tmp_path / "a.h5ad"
    a.write_h5ad(path)
    back = ad.read_h5ad(path)
    np.testing.assert_array_equal(back.uns["sel"]["mean_score"], u["mean_score"])
    assert int(back.uns["sel"]["chosen_size"]) == u["chosen_size"]
    np.testing.assert_array_equal(back.var["sel_ranking"], a.var["sel_ranking"])


def test_copy_leaves_input_unchanged_and_is_deterministic():
    X, labels = _data(4, p=90)
    a = _adata(X, labels)
    X0 = a.X.copy()
    out1 = rfecv(a, copy=True, progress=False)
    out2 = rfecv(a, copy=True, progress=False)
    assert "rfecv" not in a.uns and "rfecv_support" not in a.var
    np.testing.assert_array_equal(a.X, X0)
    np.testing.assert_array_equal(out1.var["rfecv_ranking"], out2.var["rfecv_ranking"])
    np.testing.assert_array_equal(out1.uns["rfecv"]["fold_scores"],
                                  out2.uns["rfecv"]["fold_scores"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rfecv(a, copy=True, progress=False, cv=KFold(3, shuffle=True, random_state=0))


def test_pipelined_cuts_are_verified_and_recovered(monkeypatch):
    """Cuts taken ahead are certified in the next pass; a wrong cut, or one taken at a
    solution that is not accurate enough, is undone and the round certified again."""
    X, labels = _data(12, n=150, p=1500, k=3)
    ref = rfecv_array(X, labels, progress=False, pipeline=False)
    clean = R.speculate
    calls = {"n": 0}

    def sabotage(ctx, run, res, cs, k):
        calls["n"] += 1
        beta0 = run.beta.copy()
        pend = clean(ctx, run, res, cs, k)
        if calls["n"] % 3 == 0 and pend.removed.size:   # a wrong cut
            kept = np.flatnonzero(run.active & ~np.isin(np.arange(run.active.size), pend.removed))
            pend.removed = np.sort(np.r_[pend.removed[1:], kept[0]])
        elif calls["n"] % 3 == 1:                          # an unrefined solution
            run.beta = pend.beta = beta0
        return pend

    monkeypatch.setattr(R, "speculate", sabotage)
    st = {}
    res = rfecv_array(X, labels, progress=False, stats=st)
    np.testing.assert_array_equal(res.ranking, ref.ranking)
    np.testing.assert_array_equal(res.fold_scores, ref.fold_scores)
    assert st["recoveries"] > 10 and st["uncertified"] == 0
