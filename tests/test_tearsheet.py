"""The tearsheet and the report building blocks, on real Lean bars (SPY, AAPL; data/demo).

The strategy is a simple trend rule: half the book in each of SPY and AAPL while its close is
above its 50-session mean (decided at the close, earning the next session's return); the
benchmark is SPY's total return. Prices are Lean's raw closes fully adjusted with the factor
files (``raw * price_factor * split_factor``, the first factor row on or after the day).
"""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from etl.factors.regime import slice_metrics
from research.report_html import (
    MISSING,
    ReportInputError,
    figure_tag,
    format_number,
    kind_of,
    new_figure,
    page,
    table_html,
)
from research.tearsheet import (
    HEADLINE,
    SECTIONS,
    TearsheetInputError,
    drawdown,
    drawdown_episodes,
    growth,
    monthly_heatmap,
    monthly_returns,
    session_index,
    write_tearsheet,
)
from tests.conftest import LEAN

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- real data


def adjusted_close(symbol: str) -> pd.Series:
    """Lean's raw daily close (deci-cents) fully adjusted by the factor file (SOURCE.txt's rule)."""
    bars = pd.read_csv(LEAN / "equity_usa_daily" / f"{symbol}.csv", header=None,
                       names=["time", "open", "high", "low", "close", "volume"])
    days = pd.to_datetime(bars["time"].str[:8], format="%Y%m%d")
    factors = pd.read_csv(LEAN / "equity_usa_factor_files" / f"{symbol}.csv", header=None,
                          names=["date", "price_factor", "split_factor", "reference"])
    factor_days = pd.to_datetime(factors["date"].astype(str), format="%Y%m%d")
    row = np.searchsorted(factor_days.to_numpy(), days.to_numpy(), side="left")
    factor = factors["price_factor"].to_numpy()[row] * factors["split_factor"].to_numpy()[row]
    return pd.Series(bars["close"].to_numpy() / 1e4 * factor, index=pd.DatetimeIndex(days), name=symbol.upper())


@pytest.fixture(scope="module")
def market() -> dict[str, pd.DataFrame | pd.Series]:
    """Daily returns of SPY and AAPL, the trend rule's weights and returns, 2016-01..2021-03."""
    closes = pd.concat([adjusted_close("spy"), adjusted_close("aapl")], axis=1).loc["2015-06-01":]
    rets = closes.pct_change()
    sma = closes.rolling(50).mean()
    weights = (0.5 * (closes > sma)).where(sma.notna()).loc["2016-01-01":]
    strategy = (weights.shift(1) * rets.loc[weights.index]).sum(axis=1, min_count=2).dropna()
    return {"closes": closes, "returns": rets.loc[strategy.index], "weights": weights.loc[strategy.index],
            "strategy": strategy, "spy": rets["SPY"].loc[strategy.index]}


# ----------------------------------------------------------------------------- an HTML reader


class Page(HTMLParser):
    """The visible text, headings, images and tables of a page (stdlib parser)."""

    def __init__(self, text: str):
        super().__init__()
        self.text: list[str] = []
        self.h1: list[str] = []
        self.h2: list[str] = []
        self.imgs: list[dict[str, str]] = []
        self.tables: list[list[list[str]]] = []
        self._stack: list[str] = []
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self._stack.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs))
            self._stack.pop()
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        if self._stack and self._stack[-1] == tag:
            self._stack.pop()

    def handle_data(self, data):
        if any(t in ("style", "script", "title") for t in self._stack):
            return
        if self._cell is not None:
            self._cell.append(data)
        if data.strip():
            self.text.append(data.strip())
            if self._stack and self._stack[-1] in ("h1", "h2"):
                getattr(self, self._stack[-1]).append(data.strip())

    def png(self, i: int) -> bytes:
        src = self.imgs[i]["src"]
        assert src.startswith("data:image/png;base64,")
        return base64.b64decode(src.split(",", 1)[1], validate=True)


def decoded(png: bytes) -> np.ndarray:
    assert png.startswith(PNG_MAGIC)
    return mpimg.imread(io.BytesIO(png), format="png")


def table_rows(table: list[list[str]]) -> dict[str, list[str]]:
    return {row[0]: row[1:] for row in table[1:]}


# ----------------------------------------------------------------------------- format_number


@pytest.mark.parametrize(("name", "value", "text"), [
    ("total_return", 0.123, "+12.3 %"),
    ("max_drawdown", -0.045, "-4.5 %"),
    ("benchmark_return", 7.738, "+773.8 %"),
    ("pct", 0.0, "+0.0 %"),
    ("ann_vol", 0.1523, "15.2 %"),
    ("hit_rate", 0.53, "53.0 %"),
    ("sharpe", 1.2345, "1.23"),
    ("sortino", -0.456, "-0.46"),
    ("end_value", 1599057.786906, "$1,599,058"),
    ("money", -1234.4, "-$1,234"),
    ("sessions", 5847, "5,847"),
    ("count", 1234567.0, "1,234,567"),
    ("fees", 0.0005, "5.0 bp"),
    ("start", pd.Timestamp("2021-03-31 20:15", tz="UTC"), "2021-03-31"),
    ("end", "2020-02-19", "2020-02-19"),
    ("sharpe", float("nan"), MISSING),
    ("total_return", None, MISSING),
    ("total_return", float("inf"), MISSING),
    ("date", pd.NaT, MISSING),
    ("strategy", "trend_rsi", "trend_rsi"),
    ("symbols", ["SPY", "AAPL"], "SPY, AAPL"),
    ("anything", 1599057.786906, "1,599,058"),
    ("anything", 0.00012345678, "0.0001235"),
    ("anything", 12, "12"),
    ("anything", True, "yes"),
])
def test_format_number_reads_each_kind_one_way(name, value, text):
    assert format_number(name, value) == text


def test_kind_of_resolves_metric_names_and_suffixes():
    assert [kind_of(n) for n in ("max_drawdown", "spy_total_return", "rolling_vol", "net_exposure",
                                 "sharpe_ci_low", "deflated_sharpe", "end_value", "total_trades", "decision_time",
                                 "slippage", "ratio", "strategy")] == [
        "pct", "pct", "share", "share", "ratio", "ratio", "money", "count", "date", "bps", "ratio", ""]


def test_format_number_refuses_what_it_cannot_show():
    with pytest.raises(ReportInputError, match="must be a number"):
        format_number("sharpe", "high")
    with pytest.raises(ReportInputError, match="no date"):
        format_number("date", "not a day")


# ----------------------------------------------------------------------------- blocks


def test_table_html_formats_by_column_or_by_row_and_escapes():
    frame = pd.DataFrame({"sessions": [1200, 31], "ann_return": [0.0812, -0.5], "sharpe": [0.912, np.nan]},
                         index=pd.Index(["low <vol>", "high vol"], name="regime"))
    doc = Page(table_html(frame, labels={"ann_return": "ann. return"}))
    assert doc.tables == [[["regime", "sessions", "ann. return", "sharpe"],
                           ["low <vol>", "1,200", "+8.1 %", "0.91"],
                           ["high vol", "31", "-50.0 %", MISSING]]]
    by_row = pd.DataFrame({"Strategy": [0.25, 1.5], "SPY": [1.0, np.nan]}, index=["total_return", "sharpe"])
    doc = Page(table_html(by_row, format_by="row"))
    assert doc.tables[0][1:] == [["total_return", "+25.0 %", "+100.0 %"], ["sharpe", "1.50", MISSING]]
    rows = Page(table_html([{"fees": 0.001, "end": "2021-03-31"}], {"end": "text"}))
    assert rows.tables[0] == [["fees", "end"], ["10.0 bp", "2021-03-31"]]
    with pytest.raises(ReportInputError, match="sequence of dicts"):
        table_html([[1, 2]])


def test_figure_tag_embeds_a_png_with_alt_text_and_closes_the_figure():
    fig, ax = new_figure(4.0, 2.0)
    ax.plot([0, 1, 2], [1.0, 1.1, 1.05])
    ax.set_title("growth of 1")
    doc = Page(figure_tag(fig, dpi=50, caption="a caption"))
    assert doc.imgs[0]["alt"] == "growth of 1"
    assert decoded(doc.png(0)).shape[:2] == (100, 200)  # 4 x 2 inches at 50 dpi
    assert "a caption" in doc.text
    assert fig.axes == []  # cleared: drawn once

    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(3, 2))
    figure_tag(fig, "empty", dpi=40)
    assert fig.number not in plt.get_fignums()


def test_page_has_one_section_per_heading_and_links_nothing_outside():
    text = page("A & B", [("Headline numbers", "<p>x</p>"), ("Headline numbers", "<p>y</p>")], subtitle="2021")
    doc = Page(text)
    assert doc.h1 == ["A & B"] and doc.h2 == ["Headline numbers", "Headline numbers"]
    assert 'id="headline-numbers"' in text and 'id="headline-numbers-2"' in text
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text)


# ----------------------------------------------------------------------------- pure pieces


def test_monthly_returns_are_the_compounded_returns_of_each_month(market):
    r = market["strategy"]
    table = monthly_returns(r)
    assert list(table.columns) == list(range(1, 13)) and list(table.index) == list(range(2016, 2022))
    expected: dict[tuple[int, int], float] = {}
    for day, value in r.items():  # compounded in date order, by hand
        key = (day.year, day.month)
        expected[key] = expected.get(key, 1.0) * (1.0 + value)
    for (year, month), wealth in expected.items():
        assert table.loc[year, month] == wealth - 1.0
    assert table.loc[2021, 4:].isna().all()  # the data end on 2021-03-31
    assert table.notna().sum().sum() == len(expected) == 63


def test_monthly_returns_leave_a_month_without_returns_missing():
    r = pd.Series([0.1, -0.1, np.nan, 0.02], index=pd.DatetimeIndex(["2020-01-02", "2020-01-03", "2020-02-03",
                                                                     "2021-03-01"]))
    table = monthly_returns(r)
    assert list(table.index) == [2020, 2021]
    assert table.loc[2020, 1] == 1.1 * 0.9 - 1.0
    assert np.isnan(table.loc[2020, 2]) and np.isnan(table.loc[2020, 12])
    assert table.loc[2021, 3] == 0.020000000000000018  # (1 + 0.02) - 1 in floating point
    assert monthly_returns(pd.Series([np.nan], index=pd.DatetimeIndex(["2020-01-02"]))).empty


def test_monthly_heatmap_annotates_the_monthly_table(market):
    r = market["strategy"].loc["2019":]
    fig = monthly_heatmap(r)
    months, year = fig.axes
    table = monthly_returns(r)
    assert [t.get_text() for t in months.texts] == [f"{100 * v:+.1f}" for v in table.to_numpy().ravel() if np.isfinite(v)]
    yearly = [np.prod(1.0 + r.loc[str(y)].to_numpy()) - 1.0 for y in (2019, 2020, 2021)]
    assert [t.get_text() for t in year.texts] == [f"{100 * v:+.1f}" for v in yearly]
    fig.clear()


def test_growth_and_drawdown_carry_a_missing_return_as_a_gap():
    r = pd.Series([0.1, np.nan, -0.5, 0.2, 1.0, -0.1], index=pd.date_range("2021-01-04", periods=6, freq="B"))
    level = growth(r)
    assert np.isnan(level.iloc[1])
    assert level.iloc[[0, 2, 3, 4, 5]].tolist() == [1.1, 1.1 * 0.5, 1.1 * 0.5 * 1.2, 1.1 * 0.5 * 1.2 * 2.0,
                                                    1.1 * 0.5 * 1.2 * 2.0 * 0.9]
    under = drawdown(r)
    assert under.iloc[0] == 0.0 and np.isnan(under.iloc[1])
    assert under.iloc[2] == (1.1 * 0.5) / 1.1 - 1.0
    assert under.iloc[4] == 0.0  # 1.32: a new peak
    episodes = drawdown_episodes(r)
    assert episodes.to_dict("records") == [
        {"peak": pd.Timestamp("2021-01-04"), "trough": pd.Timestamp("2021-01-06"),
         "recovery": pd.Timestamp("2021-01-08"), "drawdown": (1.1 * 0.5) / 1.1 - 1.0, "sessions": 2},
        {"peak": pd.Timestamp("2021-01-08"), "trough": pd.Timestamp("2021-01-11"), "recovery": pd.NaT,
         "drawdown": (1.1 * 0.5 * 1.2 * 2.0 * 0.9) / (1.1 * 0.5 * 1.2 * 2.0) - 1.0, "sessions": 1},
    ]
    # a loss on the first session: the start (1) is the peak
    assert drawdown(pd.Series([-0.1], index=pd.DatetimeIndex(["2021-01-04"]))).iloc[0] == 0.9 - 1.0


@pytest.mark.integration  # loads the exchange calendar (~2 s)
def test_a_decision_time_falls_on_its_session_in_new_york():
    times = pd.DatetimeIndex(["2021-01-05 01:00", "2021-01-05 21:15"], tz="UTC")  # 20:00 on the 4th, 16:15 on the 5th
    assert list(session_index(times)) == [pd.Timestamp("2021-01-04"), pd.Timestamp("2021-01-05")]


# ----------------------------------------------------------------------------- the page


@pytest.fixture(scope="module")
def full(market, tmp_path_factory) -> dict:
    """A tearsheet of the trend rule against SPY, with weights, regimes and parameters."""
    strategy, spy = market["strategy"], market["spy"]
    vol = spy.rolling(21).std()
    regime = (vol > vol.median()).astype("int64").where(vol.notna()).dropna().to_frame("regime_vol")
    table = slice_metrics(strategy, regime, "regime_vol")
    table.index = ["calm" if v == 0 else "turbulent" for v in table.index]
    total = float(np.prod(1.0 + strategy.to_numpy()) - 1.0)
    spy_total = float(np.prod(1.0 + spy.to_numpy()) - 1.0)
    metrics = {"total_return": total, "ann_return": 0.1012, "ann_vol": 0.1432, "sharpe": 0.7712,
               "sharpe_ci_low": 0.11, "sharpe_ci_high": 1.43, "sortino": 1.0512, "calmar": 0.4012, "max_drawdown": float(drawdown(strategy).min()),
               "turnover": 4.213, "exposure": 0.7423, "hit_rate": 0.5321, "psr": 0.9512, "dsr": 0.8013}
    out = tmp_path_factory.mktemp("tearsheet")
    files = write_tearsheet(
        out, title="Trend 50 on SPY and AAPL", returns=strategy, benchmark=spy, benchmark_name="SPY",
        weights=market["weights"], metrics=metrics,
        benchmark_metrics={"total_return": spy_total, "sharpe": 0.9034, "max_drawdown": -0.1},
        regime_tables={"regime_vol": table}, params={"strategy": "trend50", "symbols": ["SPY", "AAPL"],
                                                     "fees": 0.0005, "init_cash": 1_000_000.0, "start": "2016-01-04",
                                                     "rule": {"window": 50, "weight": 0.5}},
        notes=["A note of the caller."], dpi=60)
    text = files["html"].read_text()
    return {"files": files, "text": text, "doc": Page(text), "metrics": metrics, "spy_total": spy_total, "dir": out}


@pytest.mark.integration  # renders a full tearsheet (~2 s)
def test_the_tearsheet_files_are_a_self_contained_page_and_its_main_figure(full):
    files, doc = full["files"], full["doc"]
    assert set(files) == {"html", "png"} and files["html"].parent == full["dir"] == files["png"].parent
    assert doc.h1 == ["Trend 50 on SPY and AAPL"]
    assert doc.h2 == list(SECTIONS)
    # equity, rolling, heatmap, exposure, one regime chart: every one a real PNG of plausible size
    assert len(doc.imgs) == 5
    for i, img in enumerate(doc.imgs):
        pixels = decoded(doc.png(i))
        assert pixels.shape[0] >= 120 and pixels.shape[1] >= 500, (img["alt"], pixels.shape)
        assert img["alt"]
        assert pixels.std() > 0.05  # something is drawn
    assert doc.png(0) == files["png"].read_bytes()  # the PNG file is the equity figure
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", full["text"])
    assert sorted(p.name for p in full["dir"].iterdir()) == ["tearsheet.html", "tearsheet.png"]


@pytest.mark.integration  # renders a full tearsheet (~2 s)
def test_the_headline_table_shows_formatted_numbers_side_by_side(full, market):
    doc, metrics = full["doc"], full["metrics"]
    visible = " ".join(doc.text)
    assert not re.findall(r"\d\.\d{5,}", visible)  # no raw float anywhere
    headline = doc.tables[0]
    assert headline[0] == ["", "Strategy", "SPY"]
    rows = table_rows(headline)
    assert list(rows) == [HEADLINE[k] for k in HEADLINE]  # every headline row, in order
    assert rows["Total return"] == [format_number("total_return", metrics["total_return"]),
                                    format_number("total_return", full["spy_total"])]
    assert rows["Sharpe"] == ["0.77", "0.90"]
    assert rows["Sharpe 95 % interval"] == ["0.11 to 1.43", MISSING]
    assert rows["Turnover"] == ["421.3 %", MISSING] and rows["Deflated Sharpe (DSR)"] == ["80.1 %", MISSING]
    assert rows["Sessions"] == [f"{len(market['strategy']):,}"] * 2
    assert rows["First session"] == ["2016-01-05"] * 2 and rows["Last session"] == ["2021-03-31"] * 2
    for label in ("Total return", "Annualised return", "Annualised volatility", "Max drawdown", "Exposure", "Hit rate"):
        assert rows[label][0].endswith(" %"), label
    # the strategy's numbers read as drawn; the benchmark's max drawdown (-10.0 %) does not: flagged
    assert [t for t in doc.text if "differs" in t] == [
        "The benchmark SPY's max_drawdown in the headline table (-10.0 %) differs from the one compounded from the "
        f"daily returns drawn here ({format_number('max_drawdown', drawdown(market['spy']).min())}): "
        "the metrics cover another window or other returns."]


@pytest.mark.integration  # renders a full tearsheet (~2 s)
def test_the_drawdown_regime_and_parameter_tables(full, market):
    doc = full["doc"]
    deepest = doc.tables[1]
    assert deepest[0] == ["peak", "trough", "recovery", "drawdown", "sessions under water"]
    worst = drawdown_episodes(market["strategy"]).iloc[0]
    assert deepest[1] == [format_number("date", worst.peak), format_number("date", worst.trough),
                          format_number("date", worst.recovery),
                          format_number("max_drawdown", worst.drawdown), f"{worst.sessions:,}"]
    regimes = next(t for t in doc.tables if t[0][:2] == ["regime", "sessions"])
    assert [r[0] for r in regimes[1:]] == ["calm", "turbulent"]
    assert regimes[0] == ["regime", "sessions", "total return", "ann return", "ann vol", "sharpe", "max drawdown",
                          "hit rate"]
    for row in regimes[1:]:
        assert re.fullmatch(r"\d{1,3}(,\d{3})*", row[1]) and re.fullmatch(r"-?\d+\.\d\d", row[5]), row
        assert all(re.fullmatch(r"[+-]?\d[\d,]*\.\d %", row[i]) for i in (2, 3, 4, 6, 7)), row
    params = table_rows(doc.tables[-1])
    assert params == {"strategy": ["trend50"], "symbols": ["SPY, AAPL"], "fees": ["5.0 bp"],
                      "init_cash": ["$1,000,000"], "start": ["2016-01-04"], "rule": ["window: 50; weight: 50.0 %"]}
    assert "A note of the caller." in doc.text


def test_a_short_series_without_benchmark_weights_or_regimes_renders(market, tmp_path):
    r = market["strategy"].iloc[:40]
    files = write_tearsheet(tmp_path, title="Short", returns=r, benchmark=pd.Series(np.nan, index=r.index),
                            benchmark_name="SPY", weights=None, metrics={"sharpe": float("nan")},
                            regime_tables={"regime_vol": pd.DataFrame()}, params={}, dpi=40)
    doc = Page(files["html"].read_text())
    assert doc.h2 == list(SECTIONS)
    visible = " ".join(doc.text)
    assert "Not enough history for the rolling 126-session Sharpe and volatility: 40 sessions with a return." in visible
    assert "The benchmark SPY has no return on any of the strategy's sessions: it is not drawn." in visible
    assert "No target weights given: no exposure or turnover." in visible
    assert "No regime slices given." in visible and "No parameters given." in visible
    assert len(doc.imgs) == 2  # the equity figure and the monthly heatmap
    for i in range(2):
        decoded(doc.png(i))
    assert table_rows(doc.tables[0])["Sharpe"] == [MISSING, MISSING]
    assert decoded(files["png"].read_bytes()).shape[1] == 11 * 40


def test_one_session_and_all_missing_returns_render(tmp_path):
    day = pd.DatetimeIndex(["2021-03-31"])
    one = write_tearsheet(tmp_path / "one", title="One", returns=pd.Series([0.01], index=day), dpi=30)
    doc = Page(one["html"].read_text())
    assert doc.text[1] == "2021-03-31 to 2021-03-31, 1 session"
    assert table_rows(doc.tables[0]) == {"First session": ["2021-03-31"], "Last session": ["2021-03-31"],
                                         "Sessions": ["1"]}
    assert len(doc.tables) == 1  # no drawdown episode, no parameters
    assert "No drawdown: every session closed at a new high." in doc.text
    none = write_tearsheet(tmp_path / "none", title="None", returns=pd.Series([np.nan], index=day), dpi=30)
    doc = Page(none["html"].read_text())
    assert "No returns: no monthly table." in doc.text and len(doc.imgs) == 1


def test_returns_it_cannot_draw_are_refused(tmp_path):
    with pytest.raises(TearsheetInputError, match="returns is empty"):
        write_tearsheet(tmp_path, title="x", returns=pd.Series([], index=pd.DatetimeIndex([]), dtype=float))
    with pytest.raises(TearsheetInputError, match="indexed by time"):
        write_tearsheet(tmp_path, title="x", returns=pd.Series([0.01, 0.02]))
    twice = pd.Series([0.01, 0.02], index=pd.DatetimeIndex(["2021-03-31 10:00", "2021-03-31 16:00"]))
    with pytest.raises(TearsheetInputError, match="two returns on session 2021-03-31"):
        write_tearsheet(tmp_path, title="x", returns=twice)
    with pytest.raises(TearsheetInputError, match="weights must be a DataFrame"):
        write_tearsheet(tmp_path, title="x", returns=twice.iloc[:1], weights=twice)
    assert not list(tmp_path.iterdir())  # nothing written
