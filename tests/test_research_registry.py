"""The research registry (lifecycle/registry.py) on SQLite and on PostgreSQL: the same test bodies,
parametrised over both backends (PostgreSQL is the integration tier: it needs the server)."""

from __future__ import annotations

import dataclasses
import getpass
import math
import time
from datetime import date

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from etl.core.errors import AlphaError, ArgumentError, MissingColumnError, NaiveTimestampError
from lifecycle.registry import (
    PromotionError,
    QualificationRecord,
    Registry,
    RegistryError,
    ReplayRecord,
    RunExistsError,
    RunRecord,
    UnknownRunError,
    UnknownStrategyError,
    open_registry,
)

T0 = pd.Timestamp("2024-03-01 12:00", tz="UTC")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'research.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def registry(url):
    reg = Registry(url)
    reg.record_strategy("momo", kind="strategy", ref="mylab.strats:Momo", source_sha256="a" * 64, seen_at=T0)
    reg.record_strategy("xs_rank", kind="strategy", ref="strategy.xs_rank:CrossSectionalRank",
                        source_sha256="c" * 64, seen_at=T0)
    yield reg
    reg.dispose()


def make_run(run_id: str, *, strategy: str = "momo", study: str = "study-1", experiment: str = "momo",
             spec: str = "b" * 64, minutes: int = 0, status: str = "ok") -> RunRecord:
    return RunRecord(
        run_id=run_id, experiment=experiment, study=study, strategy=strategy, kind="strategy", spec_sha256=spec,
        spec_text="name = 'momo-exp'\nstrategy = 'mylab.strats:Momo'\n", code_version="git:0123abcd",
        features_fingerprint="feat-1", data_fingerprint="data-1", start="2015-01-02", end=date(2016, 12, 30),
        seed=7, status=status, path=f"/runs/{run_id}", created_at=T0 + pd.Timedelta(minutes=minutes))


def few_signals() -> pd.DataFrame:
    """Decision times in New York (a winter and a summer offset) with microseconds; a NaN weight."""
    return pd.DataFrame({
        "decision_time": pd.to_datetime(["2015-01-05 15:45:00.000001", "2015-01-05 15:45:00.000001",
                                         "2015-07-06 15:45:00.250000"]).tz_localize("America/New_York"),
        "symbol": ["SPY", "AAPL", "SPY"],
        "target_weight": [0.1 + 0.2, -1 / 3, math.nan],
    })


def test_a_run_round_trips_with_its_metrics(registry):
    stored = registry.record_run(make_run("r1"), {"all": {"sharpe": 1.25, "turnover": math.nan},
                                                  "regime_vol=high vol": {"sharpe": -0.5}})
    assert stored.created_at == T0 and stored.verified_at is None
    assert registry.run("r1") == stored and registry.has_run("r1")
    assert registry.run("r1").start == date(2015, 1, 2) and registry.run("r1").end == date(2016, 12, 30)
    metrics = registry.metrics("r1")
    assert metrics["scope"].tolist() == ["all", "all", "regime_vol=high vol"]
    assert metrics["metric"].tolist() == ["sharpe", "turnover", "sharpe"]
    assert metrics["value"].iloc[0] == 1.25 and math.isnan(metrics["value"].iloc[1]) and metrics["value"].iloc[2] == -0.5
    runs = registry.runs()
    assert runs["run_id"].tolist() == ["r1"]
    assert runs["created_at"].tolist() == [T0] and str(runs["created_at"].dtype) == "datetime64[us, UTC]"
    assert runs["verified_at"].isna().all()
    assert runs["seed"].tolist() == [7] and str(runs["seed"].dtype) == "Int64"
    assert runs["start"].tolist() == [date(2015, 1, 2)]
    strategies = registry.strategies()
    assert strategies["name"].tolist() == ["momo", "xs_rank"]
    assert strategies["first_seen"].tolist() == [T0, T0]


def test_signals_round_trip_exactly_in_utc(registry):
    registry.record_run(make_run("r1"), {}, few_signals())
    back = registry.signals("r1")
    assert back["decision_time"].tolist() == [pd.Timestamp("2015-01-05 20:45:00.000001", tz="UTC")] * 2 + [
        pd.Timestamp("2015-07-06 19:45:00.25", tz="UTC")]
    assert str(back["decision_time"].dtype) == "datetime64[us, UTC]"
    assert back["symbol"].tolist() == ["AAPL", "SPY", "SPY"]
    assert back["target_weight"].iloc[0] == -1 / 3 and back["target_weight"].iloc[1] == 0.1 + 0.2   # bit-exact
    assert math.isnan(back["target_weight"].iloc[2])
    assert registry.signals("r1").equals(back)


def test_signals_are_refused_when_naive_duplicated_or_incomplete(registry):
    naive = few_signals().assign(decision_time=lambda f: f["decision_time"].dt.tz_localize(None))
    with pytest.raises(NaiveTimestampError):
        registry.record_run(make_run("r1"), {}, naive)
    twice = pd.concat([few_signals(), few_signals().iloc[:1]])
    with pytest.raises(ArgumentError, match=r"1 \(decision_time, symbol\) pair\(s\) twice, e.g. SPY"):
        registry.record_run(make_run("r1"), {}, twice)
    with pytest.raises(MissingColumnError, match="target_weight"):
        registry.record_run(make_run("r1"), {}, few_signals().drop(columns="target_weight"))
    assert not registry.has_run("r1")  # nothing of the refused runs was written


def test_unknown_run_and_strategy_say_how_to_see_runs(registry):
    with pytest.raises(UnknownRunError, match="no run 'nope'.*`alpha experiment list`") as err:
        registry.signals("nope")
    assert isinstance(err.value, AlphaError)
    with pytest.raises(UnknownStrategyError, match="register it first with Registry.record_strategy"):
        registry.record_run(make_run("r1", strategy="ghost"))
    with pytest.raises(RegistryError, match="a name names one strategy or model"):
        registry.record_strategy("momo", kind="model", ref="mylab.models:Momo", source_sha256="d" * 64)


def test_record_strategy_again_moves_last_seen_and_source_hash_only(registry):
    later = T0 + pd.Timedelta(days=3)
    again = registry.record_strategy("momo", kind="strategy", ref="mylab.strats:Momo", source_sha256="e" * 64,
                                     seen_at=later)
    assert (again.first_seen, again.last_seen, again.source_sha256) == (T0, later, "e" * 64)


def test_a_run_is_recorded_once_and_replaced_only_from_the_same_spec(registry):
    registry.record_run(make_run("r1"), {"all": {"sharpe": 1.0}}, few_signals())
    with pytest.raises(RunExistsError, match=r"already recorded.*`alpha experiment verify r1`"):
        registry.record_run(make_run("r1"), {"all": {"sharpe": 2.0}})
    with pytest.raises(RunExistsError, match="a run id names one spec"):
        registry.record_run(make_run("r1", spec="f" * 64), {"all": {"sharpe": 2.0}}, replace=True)
    registry.mark_verified("r1", at=T0 + pd.Timedelta(hours=1))
    registry.record_run(make_run("r1", minutes=5), {"all": {"sharpe": 2.0}}, few_signals().iloc[:1], replace=True)
    run = registry.run("r1")
    assert run.created_at == T0 + pd.Timedelta(minutes=5) and run.verified_at is None   # new results: not verified
    assert registry.metrics("r1")["value"].tolist() == [2.0]
    assert registry.signals("r1")["symbol"].tolist() == ["SPY"]
    registry.record_qualification("r1", baseline_run_id=None, passed=True, at=T0)
    with pytest.raises(RunExistsError, match="a qualification refers to it"):
        registry.record_run(make_run("r1"), {"all": {"sharpe": 3.0}}, replace=True)
    assert registry.metrics("r1")["value"].tolist() == [2.0]


def test_mark_verified_stamps_the_original_run_only(registry):
    before = registry.record_run(make_run("r1"), {"all": {"sharpe": 1.0}}, few_signals())
    stamp = registry.mark_verified("r1", at=pd.Timestamp("2024-03-02 09:30", tz="America/New_York"))
    assert stamp == pd.Timestamp("2024-03-02 14:30", tz="UTC")
    after = registry.run("r1")
    assert after.verified_at == stamp
    assert dataclasses.replace(after, verified_at=None) == before
    assert registry.metrics("r1")["value"].tolist() == [1.0]
    assert len(registry.signals("r1")) == 3
    with pytest.raises(UnknownRunError):
        registry.mark_verified("r9")


def test_study_sharpes_are_the_whole_period_sharpe_of_each_successful_trial(registry):
    registry.record_run(make_run("t1", minutes=1), {"all": {"sharpe": 0.8}, "regime_vol=high vol": {"sharpe": 9.0}})
    registry.record_run(make_run("t2", minutes=2), {"all": {"sharpe": math.nan}})
    registry.record_run(make_run("t3", minutes=3), {"all": {"sharpe": 1.1}})
    registry.record_run(make_run("t4", minutes=4, status="failed"), {"all": {"sharpe": 5.0}})
    registry.record_run(make_run("o1", study="study-2"), {"all": {"sharpe": 3.0}})
    sharpes = registry.study_sharpes("study-1")
    assert sharpes[0] == 0.8 and math.isnan(sharpes[1]) and sharpes[2] == 1.1 and len(sharpes) == 3
    assert registry.runs(study="study-2")["run_id"].tolist() == ["o1"]
    assert registry.runs(experiment="momo")["run_id"].tolist() == ["o1", "t1", "t2", "t3", "t4"]


def test_promotion_is_refused_without_a_passing_qualification_and_replay(registry):
    registry.record_run(make_run("base", minutes=0), {"all": {"sharpe": 0.5}})
    registry.record_run(make_run("r1", minutes=1), {"all": {"sharpe": 1.0}})
    with pytest.raises(PromotionError, match=r"never qualified: run `alpha experiment qualify r1 .*"
                                             r"no shadow replay: run `alpha experiment replay r1`"):
        registry.promote("r1", "candidate", "beats the baseline")
    q1 = registry.record_qualification("r1", baseline_run_id="base", passed=False,
                                       hard_failures="max drawdown -41% below -30%\nturnover 12x above 5x\n",
                                       report_path="/runs/r1/qualify.html", at=T0)
    assert registry.latest_qualification("r1") == QualificationRecord(
        q1, "r1", "base", False, ("max drawdown -41% below -30%", "turnover 12x above 5x"), "/runs/r1/qualify.html", T0)
    with pytest.raises(PromotionError, match=r"latest qualification \(#\d+\) failed \(max drawdown -41% below -30%\)"):
        registry.promote("r1", "candidate", "beats the baseline")
    q2 = registry.record_qualification("r1", baseline_run_id="base", passed=True, at=T0 + pd.Timedelta(hours=1))
    with pytest.raises(PromotionError, match="no shadow replay") as err:
        registry.promote("r1", "candidate", "beats the baseline")
    assert "qualif" not in str(err.value).split("to candidate:")[1]
    r1 = registry.record_replay("r1", passed=False, sessions=20, fills=40, differing_fills=3, detail="3 fills moved",
                                at=T0)
    with pytest.raises(PromotionError, match=r"shadow replay \(#\d+\) failed \(3 of 40 fills differed\)"):
        registry.promote("r1", "candidate", "beats the baseline")
    r2 = registry.record_replay("r1", passed=True, sessions=20, fills=40, differing_fills=0, at=T0)
    assert registry.latest_replay("r1") == ReplayRecord(r2, "r1", True, 20, 40, 0, "", T0)
    assert r2 > r1
    registry.record_run(make_run("bad", minutes=2, status="failed"))
    registry.record_qualification("bad", baseline_run_id="base", passed=True)
    with pytest.raises(PromotionError, match="run 'bad' failed; only a successful run can be promoted"):
        registry.promote("bad", "candidate", "no")
    with pytest.raises(PromotionError, match="the caller promotes experiment 'xs_rank', but the registry records 'momo'"):
        registry.promote("r1", "candidate", "beats the baseline", strategy="xs_rank")
    with pytest.raises(PromotionError, match="promotes data_fingerprint 'data-2'"):
        registry.promote("r1", "candidate", "beats the baseline", data_fingerprint="data-2")
    pid = registry.promote("r1", "candidate", "beats the baseline", strategy="momo", spec_sha256="b" * 64,
                           data_fingerprint="data-1", at=T0 + pd.Timedelta(days=1))
    promotion = registry.current_promotion("momo", "candidate")
    assert (promotion.id, promotion.run_id, promotion.tier, promotion.qualification_id, promotion.replay_id) == (
        pid, "r1", "candidate", q2, r2)
    assert (promotion.spec_sha256, promotion.data_fingerprint, promotion.actor) == ("b" * 64, "data-1", getpass.getuser())
    assert promotion.created_at == T0 + pd.Timedelta(days=1)
    assert registry.current_promotion("momo", "production") is None
    # a later failing qualification withdraws the evidence for the next promotion
    registry.record_qualification("r1", baseline_run_id="base", passed=False, hard_failures=["sharpe fell"])
    with pytest.raises(PromotionError, match=r"failed \(sharpe fell\)"):
        registry.promote("r1", "production", "live for a month")


def test_production_implies_candidate(registry):
    for run_id, minutes in (("r1", 1), ("r2", 2)):
        registry.record_run(make_run(run_id, minutes=minutes), {"all": {"sharpe": 1.0}})
        registry.record_qualification(run_id, baseline_run_id=None, passed=True)
        registry.record_replay(run_id, passed=True, sessions=5, fills=9, differing_fills=0)
    first = registry.promote("r1", "candidate", "qualified", actor="alice")
    prod = registry.promote("r1", "production", "a month in shadow", actor="bob")
    assert registry.current_promotion("momo", "candidate").id == prod
    assert registry.current_promotion("momo", "production").id == prod
    newer = registry.promote("r2", "candidate", "retrained", actor="alice")
    assert registry.current_promotion("momo", "candidate").id == newer
    assert registry.current_promotion("momo", "production").id == prod
    assert registry.current_promotion("xs_rank", "candidate") is None
    table = registry.promotions("momo")
    assert table["id"].tolist() == [first, prod, newer]
    assert table["tier"].tolist() == ["candidate", "production", "candidate"]
    assert table["actor"].tolist() == ["alice", "bob", "alice"]
    assert registry.promotions("xs_rank").empty
    with pytest.raises(ArgumentError, match="tier='live' is not one of 'candidate', 'production'"):
        registry.promote("r1", "live", "x")


def _raw(registry: Registry, sql: str) -> None:
    with registry.engine.begin() as conn:
        conn.execute(sa.text(sql))


def test_append_only_tables_refuse_update_and_delete_in_the_database(registry, url):
    registry.record_run(make_run("r1"), {"all": {"sharpe": 1.0}})
    registry.record_qualification("r1", baseline_run_id=None, passed=True)
    registry.record_replay("r1", passed=True, sessions=3, fills=4, differing_fills=0)
    registry.promote("r1", "candidate", "qualified")
    statements = []
    for table, column in (("research_qualifications", "report_path"), ("research_replays", "detail"),
                          ("research_promotions", "reason")):
        statements += [f"UPDATE {table} SET {column} = 'rewritten'", f"DELETE FROM {table}"]
        if registry.engine.dialect.name == "postgresql":
            statements.append(f"TRUNCATE {table} CASCADE")
    for sql in statements:
        with pytest.raises(sa.exc.DBAPIError, match="is append-only") as err:
            _raw(registry, sql)
        assert sql.split()[0] + " refused" in str(err.value)
    # reopening installs nothing twice and the rows are untouched
    again = Registry(url)
    assert again.latest_qualification("r1").report_path is None
    assert again.latest_replay("r1").detail == ""
    assert again.promotions()["reason"].tolist() == ["qualified"]
    again.dispose()


def test_runs_tables_are_not_append_only(registry):
    """Runs, metrics and signals change through replace=True (the triggers are on the evidence only)."""
    registry.record_run(make_run("r1"), {"all": {"sharpe": 1.0}})
    _raw(registry, "UPDATE research_performance SET value = 2.0")
    assert registry.metrics("r1")["value"].tolist() == [2.0]


def test_ranking_orders_best_first_and_shows_the_promoted_tier(registry):
    registry.record_run(make_run("a", minutes=1), {"all": {"sharpe": 0.7, "max_drawdown": -0.2}})
    registry.record_run(make_run("b", minutes=2), {"all": {"sharpe": math.nan}})
    registry.record_run(make_run("c", minutes=3, strategy="xs_rank", experiment="xs"), {"all": {"sharpe": 1.5}})
    registry.record_run(make_run("d", minutes=4), {"all": {"sharpe": 0.7}})
    registry.record_run(make_run("e", minutes=5, status="failed"), {"all": {"sharpe": 9.0}})
    registry.record_run(make_run("f", minutes=6), {"regime_vol=high vol": {"sharpe": 4.0}})
    registry.record_qualification("a", baseline_run_id=None, passed=True)
    registry.record_replay("a", passed=True, sessions=1, fills=1, differing_fills=0)
    registry.promote("a", "candidate", "x")
    registry.promote("a", "production", "y")
    ranking = registry.ranking()
    assert ranking["run_id"].tolist() == ["c", "a", "d", "b"]      # a tie: the older first; NaN last
    assert ranking["rank"].tolist() == [1, 2, 3, 4]
    assert ranking["strategy"].tolist() == ["xs_rank", "momo", "momo", "momo"]
    assert ranking["promoted"].tolist() == [None, "production", None, None]
    assert ranking["created_at"].tolist() == [T0 + pd.Timedelta(minutes=m) for m in (3, 1, 4, 2)]
    assert list(ranking.columns) == ["rank", "run_id", "experiment", "study", "strategy", "metric", "scope", "value",
                                     "created_at", "promoted"]
    assert registry.ranking(experiment="xs")["run_id"].tolist() == ["c"]
    assert registry.ranking(scope="regime_vol=high vol")["run_id"].tolist() == ["f"]
    assert registry.ranking("max_drawdown", ascending=True)["value"].tolist() == [-0.2]
    assert registry.ranking("no_such_metric").empty


def test_open_registry_defaults_to_sqlite_in_the_home(tmp_home):
    reg = open_registry(tmp_home)
    assert reg.url == f"sqlite:///{tmp_home.home / 'state' / 'research.db'}"
    assert (tmp_home.home / "state" / "research.db").is_file()
    reg.dispose()


def test_run_record_checks_its_fields():
    with pytest.raises(ArgumentError, match="status='done' is not one of 'ok', 'failed'"):
        make_run("r1", status="done")
    with pytest.raises(ArgumentError, match="ends .* before it starts"):
        dataclasses.replace(make_run("r1"), end="2014-01-01")
    with pytest.raises(NaiveTimestampError, match="RunRecord.created_at"):
        dataclasses.replace(make_run("r1"), created_at=pd.Timestamp("2024-01-01"))


@pytest.mark.integration
def test_100k_signals_round_trip(registry, record_property):
    days = pd.date_range("2000-01-03 21:00", periods=1000, freq="B", tz="UTC")
    symbols = [f"S{i:03d}" for i in range(100)]
    rng = np.random.default_rng(17)
    signals = pd.DataFrame({"decision_time": np.repeat(days, 100), "symbol": symbols * 1000,
                            "target_weight": rng.normal(0, 0.01, 100_000)})
    signals.loc[::997, "target_weight"] = math.nan
    started = time.perf_counter()
    registry.record_run(make_run("big"), {"all": {"sharpe": 1.0}}, signals)
    wrote = time.perf_counter() - started
    started = time.perf_counter()
    back = registry.signals("big")
    read = time.perf_counter() - started
    record_property("write_100k_s", round(wrote, 3))
    record_property("read_100k_s", round(read, 3))
    print(f"\n{registry.engine.dialect.name}: 100k signals written in {wrote:.2f} s, read in {read:.2f} s")
    expected = signals.sort_values(["decision_time", "symbol"], ignore_index=True)
    expected["decision_time"] = expected["decision_time"].astype("datetime64[us, UTC]")
    pd.testing.assert_frame_equal(back, expected, check_exact=True)


def test_evidence_arguments_are_checked(registry):
    registry.record_run(make_run("r1"), {"all": {"sharpe": 1.0}})
    with pytest.raises(ArgumentError, match="with hard failures cannot pass"):
        registry.record_qualification("r1", baseline_run_id=None, passed=True, hard_failures=["sharpe fell"])
    with pytest.raises(UnknownRunError, match="no run 'ghost'"):
        registry.record_qualification("r1", baseline_run_id="ghost", passed=True)
    with pytest.raises(ArgumentError, match="differing_fills=5 exceeds fills=4"):
        registry.record_replay("r1", passed=False, sessions=3, fills=4, differing_fills=5)
    with pytest.raises(ArgumentError, match="sessions=-1 must be a count"):
        registry.record_replay("r1", passed=False, sessions=-1, fills=4, differing_fills=0)
    assert registry.latest_qualification("r1") is None and registry.latest_replay("r1") is None
