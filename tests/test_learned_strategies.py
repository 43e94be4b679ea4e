"""Walk-forward training (research.walkforward) and the two built-in strategies it serves:
``strategy.xs_rank.CrossSectionalRank`` and ``strategy.learned.LearnedRank``.

On a synthetic panel whose label is a known function of a feature (the return of session
t+1 is 0.01 x_t), a walk-forward learner must learn it, fit only on labels known at each
training time (the audit in ``folds``), and be caught by the look-ahead check when a rule
lets a label not yet known into training. On the demo warehouse both strategies run end to
end through ``run_backtest``.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from etl.core.errors import DeclarationError, LookAheadError, MissingColumnError
from research.walkforward import ModelFileError, NotFittedError, WalkForward, top_fraction_weights
from strategy.learned import DEFAULT_FEATURES, LearnedRank
from strategy.xs_rank import CrossSectionalRank

N_SYMBOLS, N_SESSIONS = 8, 120
TIMES = pd.date_range("2020-01-01 21:15", periods=N_SESSIONS, freq="D", tz="UTC")


def panel(seed: int = 0) -> pd.DataFrame:
    """8 symbols x 120 sessions; feature x ~ N(0, 1); the return of session t+1 is 0.01 x_t, so
    the 1-session label of (symbol, t) is 0.01 x_t, known at t+1."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N_SESSIONS, N_SYMBOLS))
    ret = np.full_like(x, np.nan)
    ret[1:] = 0.01 * x[:-1]
    return pd.DataFrame({
        "symbol": np.tile([f"S{i}" for i in range(N_SYMBOLS)], N_SESSIONS),
        "decision_time": np.repeat(TIMES, N_SYMBOLS),
        "x": x.ravel(),
        "ret_1d": ret.ravel(),
    })


def linear(seed: int):
    from sklearn.linear_model import LinearRegression  # here: scikit-learn's import is 1.4 s of the fast tier

    return LinearRegression()


def walk(**kw) -> WalkForward:
    args = dict(learner_factory=linear, features=["synthetic:x"], horizon=1, retrain_every=20, min_train_rows=40,
                top_fraction=0.25)
    return WalkForward(**{**args, **kw})


def top_by_x(frame: pd.DataFrame, k: int = 2) -> dict:
    """The k symbols with the highest x at each decision time."""
    return {t: set(g.nlargest(k, "x")["symbol"]) for t, g in frame.groupby("decision_time")}


def held(frame: pd.DataFrame, weights: pd.Series) -> dict:
    return {t: set(g.loc[weights[g.index] > 0, "symbol"]) for t, g in frame.groupby("decision_time")}


# ------------------------------------------------------------------ walk-forward on a known function
def test_walk_forward_learns_a_known_function_and_holds_the_top_fraction():
    frame = panel()
    wf = walk()
    weights = wf.target_positions(frame)
    first = TIMES[5]  # 8 labels a session, each known a session later: 40 known at session 5
    before = frame["decision_time"] < first
    assert (weights[before] == 0).all()
    per_time = weights.groupby(frame["decision_time"]).sum()
    assert (per_time[per_time.index >= first] == 1.0).all()
    assert set(weights[~before].unique()) == {0.0, 0.5}  # ceil(0.25 x 8) = 2 held, equally
    want, got = top_by_x(frame), held(frame, weights)
    assert all(got[t] == want[t] for t in TIMES[5:])

    assert [f.train_end for f in wf.folds] == list(TIMES[[5, 25, 45, 65, 85, 105]])
    assert [f.n_train for f in wf.folds] == [40, 200, 360, 520, 680, 840]
    assert all(f.max_known == f.train_end for f in wf.folds)  # the label of session T-1 is known at T
    assert [f.first_predicted for f in wf.folds] == [f.train_end for f in wf.folds]
    assert [f.last_predicted for f in wf.folds] == list(TIMES[[24, 44, 64, 84, 104, 119]])
    assert all(f.ic == pytest.approx(1.0) for f in wf.folds)


def test_the_embargo_moves_the_known_cutoff_back():
    for embargo in (2, "2D", pd.Timedelta(days=2)):
        wf = walk(embargo=embargo)
        wf.target_positions(panel())
        first = wf.folds[0]
        assert first.train_end == TIMES[7]   # 40 labels known by session 5 = 7 - 2
        assert first.max_known == TIMES[5] and first.n_train == 40


def test_walk_forward_is_deterministic_and_ignores_the_row_order():
    frame = panel()
    weights = walk().target_positions(frame)
    shuffled = frame.sample(frac=1.0, random_state=3)
    again = walk().target_positions(shuffled)
    assert again.sort_index().equals(weights)


def test_a_rule_that_lets_an_unknown_label_into_training_is_caught():
    """The audit checks each fit's rows apart from the rule that chose them: a rule that
    forgets fwd_known (trains on every earlier row) is a LookAheadError, not a fine backtest."""

    class Leaky(WalkForward):
        def training_mask(self, labelled, times, known, at, cutoff):
            return labelled & (times < at)

    leaky = Leaky(learner_factory=linear, features=["synthetic:x"], horizon=3, retrain_every=20, min_train_rows=40)
    with pytest.raises(LookAheadError, match="became known after the training time"):
        leaky.target_positions(panel())
    # the same learner under the rule trains (horizon 3: labels of T-3 and earlier)
    honest = walk(horizon=3)
    honest.target_positions(panel())
    assert all(f.max_known <= f.train_end for f in honest.folds) and honest.folds[0].train_end == TIMES[7]


def test_a_label_column_among_the_features_is_refused():
    with pytest.raises(DeclarationError, match="labels"):
        walk(features=["research:fwd_ret_1"])
    with pytest.raises(DeclarationError, match="labels"):
        LearnedRank(features=["technicals:rsi_14", "labels:fwd_known_5"])


@pytest.mark.parametrize("kw, match", [
    (dict(horizon=0), "horizon"),
    (dict(top_fraction=1.5), "top_fraction"),
    (dict(embargo=-1), "embargo"),
    (dict(embargo="soon"), "embargo"),
    (dict(features=["x"]), "view:feature"),
    (dict(features=["a:x", "b:x"]), "twice"),
    (dict(learner_factory=None), "learner_factory"),
    (dict(seed=-1), "seed"),
])
def test_walk_forward_declaration_errors(kw, match):
    with pytest.raises(DeclarationError, match=match):
        walk(**kw)


def test_features_include_what_the_labels_need():
    wf = walk()
    assert wf.FEATURES == ["synthetic:x", "technicals:ret_1d", "bars_daily:session_date"]
    assert wf.inputs == ["x"]
    with pytest.raises(MissingColumnError, match="ret_1d"):
        wf.target_positions(panel().drop(columns="ret_1d"))


# ------------------------------------------------------------------ the final model, live
def test_fit_final_predicts_one_decision_time_and_refuses_an_earlier_one():
    frame = panel()
    wf = walk()
    with pytest.raises(NotFittedError, match="fit_final"):
        wf.target_positions(frame[frame["decision_time"] == TIMES[-1]])
    wf.fit_final(frame)
    final = wf.final_fold
    assert (final.train_end, final.max_known, final.n_train) == (TIMES[-1], TIMES[-1], 8 * 119)
    last = frame[frame["decision_time"] == TIMES[-1]]
    weights = wf.target_positions(last)
    assert held(last, weights)[TIMES[-1]] == top_by_x(last)[TIMES[-1]]
    assert weights.sum() == 1.0
    with pytest.raises(LookAheadError, match="after this decision time"):
        wf.target_positions(frame[frame["decision_time"] == TIMES[50]])


def test_save_and_load_keep_the_model_and_catch_changed_bytes(tmp_path):
    frame = panel()
    last = frame[frame["decision_time"] == TIMES[-1]]
    wf = walk().fit_final(frame)
    path = wf.save(tmp_path / "model.joblib")
    meta = json.loads((tmp_path / "model.joblib.json").read_text())
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta["params"]["horizon"] == 1 and meta["final_fold"]["n_train"] == 952

    loaded = walk().load(path)
    assert loaded.target_positions(last).equals(wf.target_positions(last))
    assert loaded.scores(last).equals(wf.scores(last))
    with pytest.raises(DeclarationError, match="saved parameters"):
        walk(features=["synthetic:y"]).load(path)
    with pytest.raises(DeclarationError, match="saved parameters"):
        walk(horizon=5).load(path)

    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelFileError, match="changed since it was saved"):
        walk().load(path)
    with pytest.raises(ModelFileError, match="no saved model"):
        walk().load(tmp_path / "nothing.joblib")
    with pytest.raises(NotFittedError):
        walk().save(tmp_path / "unfitted.joblib")


# ------------------------------------------------------------------ LearnedRank
def test_learned_rank_ridge_learns_the_known_function():
    frame = panel()
    lr = LearnedRank(model="ridge", features=["synthetic:x"], horizon=1, retrain_every=20, min_train_rows=40,
                     top_fraction=0.25, alpha=1e-6)
    assert lr.NAME == "learned_rank"
    weights = lr.target_positions(frame)
    want, got = top_by_x(frame), held(frame, weights)
    assert all(got[t] == want[t] for t in TIMES[5:])
    assert all(f.max_known <= f.train_end for f in lr.folds)


def test_learned_rank_gbm_is_reproducible_with_its_seed():
    frame = panel()
    kw = dict(model="gbm", features=["synthetic:x"], horizon=1, retrain_every=40, min_train_rows=200, max_iter=30,
              learning_rate=0.2)
    a = LearnedRank(seed=7, **kw)
    wa = a.target_positions(frame)
    assert LearnedRank(seed=7, **kw).target_positions(frame).equals(wa)
    assert a.folds[0].train_end == TIMES[25] and a.folds[0].n_train == 200
    assert all(f.ic > 0.9 for f in a.folds)  # the trees find the monotone function too


@pytest.mark.parametrize("kw, match", [
    (dict(model="lightgbm"), "model"),
    (dict(alpha=0), "alpha"),
    (dict(max_iter=0), "max_iter"),
    (dict(n_threads=0), "n_threads"),
    (dict(horizon=2.5), "horizon"),
])
def test_learned_rank_declaration_errors(kw, match):
    with pytest.raises(DeclarationError, match=match):
        LearnedRank(**kw)


def test_learned_rank_defaults():
    lr = LearnedRank()
    assert lr.FEATURES == DEFAULT_FEATURES + ["bars_daily:session_date"]  # ret_1d is a default feature already
    assert lr.inputs == [f.split(":")[1] for f in DEFAULT_FEATURES]
    assert lr.params() == {"model": "ridge", "features": lr.features, "horizon": 5, "retrain_every": 63,
                           "min_train_rows": 250, "embargo": 0, "top_fraction": 0.3, "seed": 0, "alpha": 1.0,
                           "n_threads": 1}


# ------------------------------------------------------------------ ranking
def test_top_fraction_weights_on_literal_scores():
    t1, t2 = TIMES[0], TIMES[1]
    scores = pd.Series([3.0, 1.0, 2.0, np.nan, 1.0, 1.0, 1.0], index=list("abcdefg"))
    times = pd.Series([t1, t1, t1, t1, t2, t2, t2], index=scores.index)
    symbols = pd.Series(["A", "B", "C", "D", "C", "A", "B"], index=scores.index)
    w = top_fraction_weights(scores, times, symbols, 0.5)
    # t1: 3 scored -> ceil(1.5) = 2: A (3) and C (2); t2: a three-way tie -> A and B (alphabetical)
    assert w.tolist() == [0.5, 0.0, 0.5, 0.0, 0.0, 0.5, 0.5]
    assert top_fraction_weights(scores, times, symbols, 0.01).tolist() == [1.0, 0, 0, 0, 0, 1.0, 0]


def xs_literal() -> pd.DataFrame:
    t1, t2 = TIMES[0], TIMES[1]
    return pd.DataFrame({
        "symbol": ["A", "B", "C", "D", "A", "B", "C", "D"],
        "decision_time": [t1] * 4 + [t2] * 4,
        "mom": [1.0, 2.0, 3.0, 4.0, 9.0, 1.0, 1.0, 1.0],
        "rsi": [4.0, 3.0, 2.0, 1.0, np.nan, 3.0, 1.0, 2.0],
    })


def test_cross_sectional_rank_zscores_combines_and_holds_the_top():
    frame = xs_literal()
    xs = CrossSectionalRank(factors={"v:mom": 1.0, "v:rsi": -1.0}, top_fraction=0.5)
    assert xs.NAME == "xs_rank" and xs.FEATURES == ["v:mom", "v:rsi"]
    z = (np.array([1.0, 2.0, 3.0, 4.0]) - 2.5) / np.sqrt(1.25)
    scores = xs.scores(frame)
    # t1: mom's z minus rsi's z (rsi's is -z); t2: A has no rsi (not scored), mom is flat (0),
    # rsi 3, 1, 2 -> z = (x - 2) / sqrt(2/3), score = -z
    assert scores.iloc[:4].tolist() == pytest.approx(list(2 * z))
    assert np.isnan(scores.iloc[4])
    assert scores.iloc[5:].tolist() == pytest.approx([-1 / np.sqrt(2 / 3), 1 / np.sqrt(2 / 3), 0.0])
    assert xs.target_positions(frame).tolist() == [0.0, 0.0, 0.5, 0.5, 0.0, 0.0, 0.5, 0.5]
    ranked = CrossSectionalRank(factors={"v:mom": 1.0, "v:rsi": -1.0}, top_fraction=0.5, normalise="rank")
    # ranks scaled to [-0.5, 0.5]: rsi 3, 1, 2 -> 0.5, -0.5, 0; the flat mom ties at the middle, 0
    assert ranked.scores(frame).iloc[5:].tolist() == [-0.5, 0.5, 0.0]
    assert ranked.target_positions(frame).tolist() == [0.0, 0.0, 0.5, 0.5, 0.0, 0.0, 0.5, 0.5]


def test_cross_sectional_rank_holds_a_lone_symbol_and_nothing_without_data():
    frame = xs_literal().iloc[[0, 4]]  # t1: A alone; t2: A without rsi
    weights = CrossSectionalRank(factors={"v:mom": 1.0, "v:rsi": -1.0}).target_positions(frame)
    assert weights.tolist() == [1.0, 0.0]


@pytest.mark.parametrize("kw, match", [
    (dict(factors={}), "non-empty"),
    (dict(factors={"v:mom": 0}), "is 0"),
    (dict(factors={"v:mom": "up"}), "finite number"),
    (dict(factors={"mom": 1.0}), "view:feature"),
    (dict(top_fraction=0), "top_fraction"),
    (dict(normalise="minmax"), "normalise"),
])
def test_cross_sectional_rank_declaration_errors(kw, match):
    with pytest.raises(DeclarationError, match=match):
        CrossSectionalRank(**kw)


def test_cross_sectional_rank_defaults_exist_in_the_demo_warehouse(client):
    features = client.features()
    for ref in CrossSectionalRank().FEATURES + LearnedRank().FEATURES:
        view, name = ref.split(":")
        assert name in features[view], ref


# ------------------------------------------------------------------ the demo warehouse, end to end
SYMBOLS = ["AAPL", "IBM", "SPY", "GOOGL"]


@pytest.fixture(scope="module")
def xs_backtest(client, tmp_path_factory):
    from strategy.backtest import run_backtest

    strategy = CrossSectionalRank()
    result = run_backtest(client, SYMBOLS, start="2016-01-01", end="2020-12-31", strategy=strategy,
                          out_dir=tmp_path_factory.mktemp("xs_rank"))
    return strategy, result


@pytest.fixture(scope="module")
def learned_backtest(client, tmp_path_factory):
    from strategy.backtest import run_backtest

    strategy = LearnedRank(model="ridge")
    result = run_backtest(client, SYMBOLS, start="2016-01-01", end="2020-12-31", strategy=strategy,
                          out_dir=tmp_path_factory.mktemp("learned_rank"))
    return strategy, result


@pytest.mark.slow
def test_xs_rank_backtest_end_to_end(xs_backtest):
    strategy, result = xs_backtest
    frame = result.features
    weights = strategy.target_positions(frame)
    expect = frame.assign(w=weights).pivot(index="decision_time", columns="symbol", values="w")
    pd.testing.assert_frame_equal(result.targets, expect.loc[:, result.targets.columns], check_names=False)
    scored = strategy.scores(frame).notna().groupby(frame["decision_time"]).sum()
    n_held = (result.targets > 0).sum(axis=1)
    assert (n_held == np.ceil(0.3 * scored - 1e-9).clip(lower=0)).all()
    sums = result.targets.sum(axis=1)
    assert np.allclose(sums[sums > 0], 1.0) and (sums > 0).mean() > 0.95
    assert result.stats["Total Trades"] > 10 and np.isfinite(result.stats["Sharpe Ratio"])
    assert json.loads(result.files["stats"].read_text())["params"]["strategy"] == "xs_rank"


@pytest.mark.slow
def test_learned_rank_backtest_never_trains_on_a_label_unknown_at_its_fit(learned_backtest):
    strategy, result = learned_backtest
    folds = strategy.folds
    assert len(folds) >= 15  # 5 years, a fit every 63 sessions once 250 labels are known
    assert all(f.max_known <= f.train_end for f in folds)
    assert [f.n_train for f in folds] == sorted(f.n_train for f in folds)
    assert all(a.last_predicted < b.first_predicted for a, b in zip(folds, folds[1:], strict=False))
    targets = result.targets
    assert (targets[targets.index < folds[0].train_end] == 0).all().all()
    after = targets[targets.index >= folds[0].train_end].sum(axis=1)
    assert np.allclose(after[after > 0], 1.0) and (after > 0).mean() > 0.95
    assert result.stats["Total Trades"] > 10


@pytest.mark.slow
def test_learned_rank_final_model_decides_the_last_session_live(learned_backtest, client, tmp_path):
    strategy, result = learned_backtest
    frame = result.features
    live = LearnedRank(model="ridge").fit_final(frame)
    last_time = frame["decision_time"].max()
    assert live.final_fold.train_end == last_time and live.final_fold.max_known <= last_time
    entities = pd.DataFrame({"symbol": SYMBOLS, "event_timestamp": [last_time] * len(SYMBOLS)})
    now = client.history(entities, live.FEATURES).rename(columns={"event_timestamp": "decision_time"})
    weights = live.target_positions(now)
    assert weights.sum() == pytest.approx(1.0) and (weights > 0).sum() == 2  # ceil(0.3 x 4)
    reloaded = LearnedRank(model="ridge").load(live.save(tmp_path / "learned.joblib"))
    assert reloaded.target_positions(now).equals(weights)
    with pytest.raises(LookAheadError):
        live.target_positions(frame[frame["decision_time"] == frame["decision_time"].iloc[0]])


@pytest.mark.slow
def test_learned_rank_gbm_backtest_audit(client, tmp_path):
    from strategy.backtest import run_backtest

    strategy = LearnedRank(model="gbm", seed=1)
    result = run_backtest(client, SYMBOLS, start="2017-01-01", end="2020-12-31", strategy=strategy, out_dir=tmp_path)
    assert strategy.folds and all(f.max_known <= f.train_end for f in strategy.folds)
    assert result.stats["Total Trades"] > 10
