"""The live loop on the session warehouse: restart idempotency, a real SIGKILL between
the ledger's pending write, the broker submit and the fill, stale features blocking a
symbol, the calendar loop on an injected clock, and the ledger on PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from strategy import trend_rsi
from strategy.ledger import Ledger
from strategy.live_loop import run_live, run_session
from strategy.paper import PaperBroker, PriceBook

T1 = pd.Timestamp("2020-06-01 20:15", tz="UTC")   # availability time of 2020-06-01 (close 16:00 NY + 15 min)
T2 = pd.Timestamp("2020-06-02 20:15", tz="UTC")
BOOK = ("2020-05-01", "2020-06-05")


@pytest.fixture(scope="module")
def book(client):
    return PriceBook.from_history(client, client.symbols(), *BOOK)


def _broker(book, url, at):
    return PaperBroker(book, fees=0.001, slippage=0.0005, url=url, clock=lambda: at[0])


def test_a_second_run_for_the_same_decision_time_sends_nothing(client, book, tmp_path):
    ledger_url, broker_url = f"sqlite:///{tmp_path / 'ledger.db'}", f"sqlite:///{tmp_path / 'broker.db'}"
    at = [T1]
    first = run_session(client, _broker(book, broker_url, at), Ledger(ledger_url), trend_rsi, T1, source="history")
    assert first.decided and len(first.sent) >= 2
    # a restart: new broker and ledger objects on the same databases, the same decision time
    broker, ledger = _broker(book, broker_url, at), Ledger(ledger_url)
    again = run_session(client, broker, ledger, trend_rsi, T1, source="history")
    assert not again.decided and again.sent == [] and again.fills == 0
    assert len(broker.orders()) == len(first.sent)
    assert sorted(ledger.orders("trend_rsi").query("status == 'submitted'")["client_order_id"]) == sorted(first.sent)
    # the next decision records each fill once, at the 2020-06-02 open
    at[0] = T2
    nxt = run_session(client, broker, ledger, trend_rsi, T2, source="history")
    assert nxt.fills == len(first.sent)
    fills = ledger.fills("trend_rsi")
    assert sorted(fills["client_order_id"]) == sorted(first.sent)
    assert (fills["time"] == pd.Timestamp("2020-06-02 13:30", tz="UTC")).all()
    assert run_session(client, broker, ledger, trend_rsi, T2, source="history").fills == 0
    assert len(ledger.fills("trend_rsi")) == len(first.sent)


SCRIPT = textwrap.dedent('''
    import sys, pandas as pd
    from sdk import connect
    from strategy import trend_rsi
    from strategy.ledger import Ledger
    from strategy.live_loop import run_session
    from strategy.paper import PaperBroker, PriceBook
    home, ledger_url, broker_url, times = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    client = connect(home)
    book = PriceBook.from_history(client, client.symbols(), "2020-05-01", "2020-06-05")
    at = [None]
    broker = PaperBroker(book, fees=0.001, slippage=0.0005, url=broker_url, clock=lambda: at[0])
    ledger = Ledger(ledger_url)
    for t in times:
        at[0] = pd.Timestamp(t)
        r = run_session(client, broker, ledger, trend_rsi, pd.Timestamp(t), source="history")
        print(r.line(), flush=True)
''')


def _run(script, args, env_extra, step_file=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPHA_LIVE")}
    env.update(env_extra)
    proc = subprocess.Popen([sys.executable, str(script), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if step_file is None:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        return out
    deadline = time.monotonic() + 300
    while not step_file.exists():  # the loop writes the file when it reaches the hook, then waits
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the live process never reached {env_extra}: rc={proc.returncode}\n{err[-3000:]}")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    step_file.unlink()
    return None


def test_sigkill_between_pending_submit_and_fill_loses_and_duplicates_nothing(warehouse, tmp_path):
    home = str(warehouse["settings"].home)
    script = tmp_path / "live.py"
    script.write_text(SCRIPT)
    ledger_url, broker_url = f"sqlite:///{tmp_path / 'ledger.db'}", f"sqlite:///{tmp_path / 'broker.db'}"
    step = tmp_path / "step"
    args = [home, ledger_url, broker_url]

    def state():  # what the ledger and the broker's own database hold
        import sqlalchemy as sa

        ledger, engine = Ledger(ledger_url), sa.create_engine(broker_url)
        try:
            with engine.connect() as conn:
                sent = pd.read_sql_table("paper_orders", conn)
            return ledger.orders("trend_rsi"), ledger.fills("trend_rsi"), sent
        finally:
            ledger.dispose()
            engine.dispose()

    # 1. killed after the decision's orders were written as pending, before any was sent
    _run(script, [*args, str(T1)], {"ALPHA_LIVE_PAUSE_AT": "after_pending", "ALPHA_LIVE_STEP_FILE": str(step)}, step)
    orders, fills, sent = state()
    to_send = orders[orders["status"] != "blocked"]
    assert len(to_send) >= 2 and set(to_send["status"]) == {"pending"} and sent.empty and fills.empty

    # 2. restarted, killed right after the broker took the first order, before the ledger said so
    _run(script, [*args, str(T1)], {"ALPHA_LIVE_PAUSE_AT": "after_send", "ALPHA_LIVE_STEP_FILE": str(step)}, step)
    orders, fills, sent = state()
    assert len(sent) == 1 and set(orders.loc[orders["status"] != "blocked", "status"]) == {"pending"}

    # 3. restarted, killed after every order was submitted, before any fill
    _run(script, [*args, str(T1)], {"ALPHA_LIVE_PAUSE_AT": "after_submit", "ALPHA_LIVE_STEP_FILE": str(step)}, step)
    orders, fills, sent = state()
    assert sorted(sent["client_order_id"]) == sorted(to_send["client_order_id"])  # each exactly once: no duplicate
    assert set(orders.loc[orders["status"] != "blocked", "status"]) == {"submitted"} and fills.empty
    assert set(sent["status"]) == {"accepted"}

    # 4. restarted without faults: the same decision again, then the next session records the fills
    out = _run(script, [*args, str(T1), str(T2)], {})
    assert "already decided; 0 sent" in out
    orders, fills, sent = state()
    assert len(sent) == len(to_send) and sent["client_order_id"].is_unique
    assert sorted(fills["client_order_id"]) == sorted(to_send["client_order_id"])  # none lost, none twice
    assert (orders.set_index("client_order_id").loc[fills["client_order_id"], "status"] == "filled").all()
    by_id = sent.set_index("client_order_id")
    assert fills.set_index("client_order_id")["qty"].to_dict() == by_id.loc[fills["client_order_id"], "filled_qty"].to_dict()


def test_stale_features_block_trading_for_that_symbol(client, tmp_path):
    """Online values (alpha.latest) at a decision time: UW (delisted 1998) has no online
    values, so asked for without a universe filter it is stale on 2021-03-31 (by default it is not in
    the universe, not asked: tests/test_universe_through_time.py); thirteen days after the last bar
    every symbol is stale -- the warehouse stopped, the symbols did not: they stay in the universe --
    and the strategy's exit from every position (targets fall to 0) is blocked, not sent."""
    book = PriceBook.from_history(client, client.symbols(), "2021-03-01", "2021-03-31")
    at = [None]
    broker = PaperBroker(book, fees=0.001, slippage=0.0005, url="sqlite://", clock=lambda: at[0])
    ledger = Ledger("sqlite://")
    for t in book.times[-4:-1]:  # three sessions of history decisions build positions
        at[0] = t
        run_session(client, broker, ledger, trend_rsi, t, source="history")
    last = book.times[-1]
    at[0] = last
    r = run_session(client, broker, ledger, trend_rsi, last, source="latest", universe=None)
    assert set(r.stale) == {"UW"} and "close from 1998-07-16 20:15Z, older than the 10-day TTL" in r.stale["UW"]  # delisted 1998
    assert set(r.blocked) <= {"UW"}  # UW's target stays 0: nothing to block unless it changed
    fresh = ledger.targets("trend_rsi").query("decision_time == @last").set_index("symbol")["fresh"]
    assert fresh.to_dict() == {s: s != "UW" for s in fresh.index}
    held = broker.account().positions
    assert len(held) >= 1
    n_orders = len(broker.orders())

    targets = ledger.targets("trend_rsi")
    exiting = set(targets[(targets["decision_time"] == last) & (targets["weight"] > 0)]["symbol"])
    assert exiting  # the strategy held something on 2021-03-31

    later = pd.Timestamp("2021-04-13 20:15", tz="UTC")
    at[0] = later
    r = run_session(client, broker, ledger, trend_rsi, later, source="latest")
    assert r.decided and r.sent == [] and list(r.left_out) == ["UW"] and r.exits == []
    # every symbol's values are now 13 days old: all targets fall to 0, and every exit is blocked
    assert exiting <= set(r.blocked)
    assert all("older than the 10-day TTL" in r.blocked[s] for s in exiting)
    assert len(broker.orders()) == n_orders     # nothing reached the broker
    blocked = ledger.orders("trend_rsi").query("status == 'blocked' and decision_time == @later").set_index("symbol")
    for sym in exiting & set(held):
        assert blocked.loc[sym, "qty"] == pytest.approx(-held[sym], rel=1e-12)  # what would have been sold
        assert blocked.loc[sym, "note"].startswith("stale:")
    assert broker.account().positions == held


def test_run_live_sleeps_until_each_calendar_decision_time(client, book, tmp_path):
    clock = [pd.Timestamp("2020-05-29 23:00", tz="UTC")]   # a Friday evening, after that day's decision time
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        clock[0] += pd.Timedelta(seconds=seconds)

    broker = PaperBroker(book, url="sqlite://", clock=lambda: clock[0])
    ledger = Ledger("sqlite://")
    reports = run_live(client, broker, ledger, trend_rsi, max_sessions=3, now=lambda: clock[0], sleep=sleep, source="history")
    times = [r.decision_time for r in reports]
    # the weekend is skipped: Monday 2020-06-01, Tuesday, Wednesday at close (16:00 NY) + 15 min
    assert times == [pd.Timestamp(f"2020-06-0{d} 20:15", tz="UTC") for d in (1, 2, 3)]
    assert list(ledger.decisions("trend_rsi")["decision_time"]) == times
    assert sum(slept) >= (times[-1] - pd.Timestamp("2020-05-29 23:00", tz="UTC")).total_seconds()
    assert len(ledger.fills("trend_rsi")) >= 1



def test_ledger_on_postgresql_survives_a_restart(client, book, tmp_path, postgres_url):
    from etl.core.config import load_settings
    from strategy.ledger import open_ledger

    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "config.toml").write_text(f'state_url = "{postgres_url}"\n')
    settings = load_settings(tmp_path / "home")
    at = [T1]
    broker_url = f"sqlite:///{tmp_path / 'broker.db'}"
    ledger = open_ledger(settings)
    assert ledger.url.startswith("postgresql")
    first = run_session(client, _broker(book, broker_url, at), ledger, trend_rsi, T1, source="history")
    ledger.dispose()
    ledger = open_ledger(settings)  # a restart
    assert run_session(client, _broker(book, broker_url, at), ledger, trend_rsi, T1, source="history").sent == []
    at[0] = T2
    second = run_session(client, _broker(book, broker_url, at), ledger, trend_rsi, T2, source="history")
    assert second.fills == len(first.sent) >= 2
    fills = ledger.fills("trend_rsi")
    assert sorted(fills["client_order_id"]) == sorted(first.sent)
    cash = ledger.cash("trend_rsi")
    assert len(cash) == 2 and cash["cash"].iloc[-1] < 1_000_000.0
    ledger.dispose()
    assert not (tmp_path / "home" / "state" / "ledger.db").exists()


def test_one_staleness_rule_judged_at_the_decision_time():
    from strategy.live import TTL, judge_freshness

    t = pd.Timestamp("2021-03-31 20:15", tz="UTC")
    latest = pd.DataFrame({
        "symbol": ["A", "B", "C", "D"],
        "close": [1.0, 2.0, float("nan"), 4.0],
        "close__ts": [t - TTL, t - TTL - pd.Timedelta(microseconds=1), t, t + pd.Timedelta(days=1)],
    })
    frame, reasons = judge_freshness(latest, ["close"], t)
    assert frame["close"].isna().tolist() == [False, True, True, True]
    assert reasons == {"B": "close from 2021-03-21 20:14Z, older than the 10-day TTL", "C": "close missing",
                       "D": "close from 2021-04-01 20:15Z, after the decision time"}
    assert latest["close"].tolist()[:2] == [1.0, 2.0]  # the input is not modified
