"""Building blocks of self-contained HTML reports: one number format, tables, embedded figures, a page.

Every number a report shows goes through :func:`format_number`, so a value reads the same in
every table, caption and plot annotation of every report (the tearsheet, the qualification
report): returns as signed percentages with one decimal (``+12.3 %``), shares and volatilities
as unsigned percentages (``15.2 %``), ratios with two decimals (``1.23``), money as whole
dollars (``$1,599,058``), counts with thousands separators (``5,847``), costs in basis points
(``5.0 bp``), dates as ``YYYY-MM-DD``, and a missing value (None, NaN, NaT, an infinity) as
``—``. The kind of a value is named by the caller or resolved from its name (:func:`kind_of`:
``max_drawdown`` is a return, ``ann_vol`` a share, ``sharpe`` a ratio, ...).

Figures are PNGs embedded as base64 ``data:`` URIs (:func:`figure_tag`), so a page is one file
that can be mailed or archived. :func:`new_figure` makes a matplotlib figure on the Agg canvas
without pyplot (no global state, no backend switch). Nothing here does I/O.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from etl.core.errors import ArgumentError

__all__ = [
    "KINDS",
    "MISSING",
    "ReportInputError",
    "figure_tag",
    "format_number",
    "image_tag",
    "kind_of",
    "new_figure",
    "notes_html",
    "page",
    "png_bytes",
    "table_html",
]

#: how a missing value reads
MISSING = "—"

#: the kinds :func:`format_number` knows, and what each looks like
KINDS: dict[str, str] = {
    "pct": "signed percentage, 1 decimal: +12.3 % (a return, a drawdown; 0.123 -> +12.3 %)",
    "share": "unsigned percentage, 1 decimal: 15.2 % (a volatility, an exposure, a hit rate, a probability)",
    "ratio": "2 decimals: 1.23 (Sharpe, Sortino, Calmar, beta)",
    "money": "whole dollars with separators: $1,599,058",
    "count": "integer with thousands separators: 5,847",
    "bps": "basis points, 1 decimal: 5.0 bp (fees, slippage; 0.0005 -> 5.0 bp)",
    "date": "YYYY-MM-DD",
    "text": "as given (lists joined with commas)",
    "number": "a plain number: 4 significant digits, whole with separators from 1,000",
}

#: metric and parameter names with a fixed kind (a name not listed is resolved by the suffix rules below)
_NAMES: dict[str, str] = {
    "total_return": "pct", "ann_return": "pct", "cagr": "pct", "max_drawdown": "pct", "drawdown": "pct",
    "benchmark_return": "pct", "excess_return": "pct", "alpha": "pct", "var": "pct", "cvar": "pct",
    "ann_vol": "share", "volatility": "share", "tracking_error": "share", "exposure": "share",
    "gross_exposure": "share", "net_exposure": "share", "turnover": "share", "hit_rate": "share",
    "win_rate": "share", "psr": "share", "dsr": "share", "coverage": "share",
    "sharpe": "ratio", "sortino": "ratio", "calmar": "ratio", "sharpe_ci_low": "ratio", "sharpe_ci_high": "ratio",
    "information_ratio": "ratio", "beta": "ratio", "ic": "ratio", "icir": "ratio", "t_stat": "ratio",
    "skew": "ratio", "kurtosis": "ratio",
    "init_cash": "money", "end_value": "money", "start_value": "money", "pnl": "money", "fees_paid": "money",
    "sessions": "count", "trades": "count", "total_trades": "count", "n_trials": "count", "trials": "count",
    "years": "ratio",
    "fees": "bps", "slippage": "bps", "cost": "bps", "costs": "bps",
    "start": "date", "end": "date", "date": "date", "first": "date", "last": "date",
}

#: suffix rules, first match wins: (pattern on the lower-cased name, kind)
_SUFFIXES: tuple[tuple[str, str], ...] = (
    (r"(^|_)(return|ret|drawdown|dd)$", "pct"),
    (r"(^|_)(vol|volatility|exposure|turnover|rate|share|weight|psr|dsr|prob)$", "share"),
    (r"(^|_)(sharpe|sortino|calmar|ratio|beta|ic|ir)(_ci_low|_ci_high|_low|_high)?$", "ratio"),
    (r"(^|_)(value|cash|equity|pnl|fees_paid|dollars|notional)$", "money"),
    (r"(^|_)(sessions|trades|count|days|rows|symbols_count|n)$|^n_", "count"),
    (r"(^|_)(date|day|start|end|time)$", "date"),
    (r"(^|_)(fee|fees|slippage|cost|costs|bp|bps)$", "bps"),
)


class ReportInputError(ArgumentError):
    """A report was given something it cannot show (an unknown number kind, a table of the wrong
    shape). Names the argument and what it must be."""


def kind_of(name: str) -> str:
    """The kind of the value called ``name``: ``name`` itself when it is a kind of :data:`KINDS`,
    else the fixed kind of a known metric name, else the first matching suffix rule (``*_return``
    -> ``pct``, ``*_vol`` -> ``share``, ``*_sharpe`` -> ``ratio``, ``*_value`` -> ``money``, ...),
    else ``""`` (unknown: :func:`format_number` then goes by the value's type)."""
    key = str(name).strip().lower().replace(" ", "_").replace("-", "_")
    if key in KINDS:
        return key
    if key in _NAMES:
        return _NAMES[key]
    for pattern, kind in _SUFFIXES:
        if re.search(pattern, key):
            return kind
    return ""


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)):
        return not math.isfinite(float(value))
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or an array: not a scalar missing value
        return False


def _as_float(value: Any, kind: str) -> float:
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ReportInputError(f"format_number: a {kind!r} value must be a number, got {value!r} "
                               f"({type(value).__name__}); pass kind 'text' to show it as it is") from None


def _number(x: float) -> str:
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if x == int(x):
        return f"{int(x)}"
    return f"{x:.4g}"


def format_number(name_or_kind: str, value: Any) -> str:
    """``value`` as a report shows it, by the kind ``name_or_kind`` names or resolves to
    (:func:`kind_of`; see :data:`KINDS`). Missing values (None, NaN, NaT, +-inf) read ``—``.

    With an unknown name the value's type decides: a bool reads yes/no, an integer is a count,
    a float a plain number, a timestamp or date a date, a list its items joined with commas,
    anything else its ``str``.
    """
    kind = kind_of(name_or_kind)
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray, pd.Index)) and kind != "text":
        items = list(value)
        return ", ".join(format_number(name_or_kind, v) for v in items) if items else MISSING
    if _is_missing(value):
        return MISSING
    if not kind:
        if isinstance(value, (bool, np.bool_)):
            return "yes" if value else "no"
        if isinstance(value, (int, np.integer)):
            kind = "count"
        elif isinstance(value, (float, np.floating)):
            kind = "number"
        elif isinstance(value, (pd.Timestamp, dt.date, np.datetime64)):
            kind = "date"
        else:
            kind = "text"
    if kind == "text":
        if isinstance(value, (list, tuple, set, frozenset)):
            return ", ".join(str(v) for v in value)
        return str(value)
    if kind == "date":
        try:
            ts = pd.Timestamp(value)
        except (TypeError, ValueError):
            raise ReportInputError(f"format_number: {value!r} is no date ({name_or_kind!r}); "
                                   f"pass a timestamp, a date or an ISO string") from None
        return MISSING if ts is pd.NaT else f"{ts:%Y-%m-%d}"
    x = _as_float(value, kind)
    if kind == "pct":
        return f"{100.0 * x:+,.1f} %"
    if kind == "share":
        return f"{100.0 * x:,.1f} %"
    if kind == "ratio":
        return f"{x:,.2f}"
    if kind == "money":
        return f"{'-' if x < 0 else ''}${abs(x):,.0f}"
    if kind == "count":
        return f"{round(x):,}"
    if kind == "bps":
        return f"{1e4 * x:,.1f} bp"
    if kind == "number":
        return _number(x)
    raise ReportInputError(f"format_number: unknown kind {name_or_kind!r}; use one of {sorted(KINDS)} "
                           f"or a metric name kind_of() resolves")


# ----------------------------------------------------------------------------- figures


def new_figure(width: float = 10.0, height: float = 4.0, *, nrows: int = 1, ncols: int = 1,
               margins: tuple[float, float, float, float] | None = None, **subplot_kw):
    """A matplotlib ``Figure`` on the Agg canvas (no pyplot, no global state) and its axes (``fig,
    axes`` as ``plt.subplots`` returns them). The layout is matplotlib's constrained layout, or,
    with ``margins`` (left, right, top, bottom, in inches), fixed margins: about half the drawing
    time, for figures whose labels are known to fit (``gridspec_kw`` may then set ``hspace`` and
    ``wspace``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout=None if margins else "constrained")
    FigureCanvasAgg(fig)
    if margins:
        left, right, top, bottom = margins
        fig.subplots_adjust(left=left / width, right=1.0 - right / width, top=1.0 - top / height,
                            bottom=bottom / height)
    axes = fig.subplots(nrows, ncols, squeeze=True, **subplot_kw)
    return fig, axes


def _alt_of(fig) -> str:
    texts = []
    if getattr(fig, "_suptitle", None) is not None and fig._suptitle.get_text():
        texts.append(fig._suptitle.get_text())
    texts += [ax.get_title() for ax in fig.axes if ax.get_title()]
    return "; ".join(texts) or "figure"


def _close(fig) -> None:
    """Release ``fig``: a pyplot figure is closed in pyplot's registry; a plain ``Figure`` (see
    :func:`new_figure`) is only cleared."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None and getattr(fig, "number", None) in pyplot.get_fignums():
        pyplot.close(fig)
    else:
        fig.clear()


def png_bytes(fig, *, dpi: int = 100) -> bytes:
    """``fig`` rendered as PNG bytes (white background); the figure stays open."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def figure_tag(fig, alt: str = "", *, caption: str = "", dpi: int = 100) -> str:
    """A ``<figure>`` holding ``fig`` as a base64 PNG ``<img>`` with ``alt`` text (default: the
    figure's titles) and an optional ``caption``. Closes the figure: it is drawn once."""
    try:
        data = png_bytes(fig, dpi=dpi)
        alt = alt or _alt_of(fig)
    finally:
        _close(fig)
    return image_tag(data, alt, caption=caption)


def image_tag(png: bytes, alt: str, *, caption: str = "") -> str:
    """A ``<figure>`` holding the PNG bytes ``png`` as a base64 ``<img>`` with ``alt`` text and an
    optional ``caption`` (for a figure already rendered, e.g. also written to a file)."""
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ReportInputError("image_tag: png must be the bytes of a PNG image (see png_bytes)")
    src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{src}" alt="{html.escape(alt, quote=True)}">{cap}</figure>'


# ----------------------------------------------------------------------------- tables


def _cell(kind_key: str, formats: Mapping[str, str], value: Any) -> str:
    return format_number(formats.get(kind_key, kind_key), value)


def table_html(
    data: pd.DataFrame | Sequence[Mapping[str, Any]],
    formats: Mapping[str, str] | None = None,
    *,
    format_by: Literal["column", "row"] = "column",
    index: bool | None = None,
    labels: Mapping[str, str] | None = None,
    caption: str = "",
) -> str:
    """An HTML table of ``data`` (a DataFrame, or rows as dicts: the keys are the columns), every
    cell through :func:`format_number`.

    A cell's kind is ``formats[key]`` when given, else ``key`` itself (resolved by
    :func:`kind_of`), where ``key`` is the cell's column name (``format_by="column"``) or its
    row label (``format_by="row"``: a table of metrics by row). ``index`` shows the DataFrame's
    index as the first column (default: unless it is a plain 0..n-1 range). ``labels`` renames
    column headers and row labels for display. Numbers are right-aligned.
    """
    formats = dict(formats or {})
    labels = dict(labels or {})
    if isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        if not all(isinstance(r, Mapping) for r in data):
            raise ReportInputError("table_html: data must be a DataFrame or a sequence of dicts (one per row)")
        frame = pd.DataFrame(list(data))
    else:
        raise ReportInputError(f"table_html: data must be a DataFrame or a sequence of dicts, got {type(data).__name__}")
    if format_by not in ("column", "row"):
        raise ReportInputError(f"table_html: format_by must be 'column' or 'row', got {format_by!r}")
    if index is None:
        index = not isinstance(frame.index, pd.RangeIndex)
    e = html.escape

    def label(key: Any) -> str:
        return e(labels.get(str(key), str(key)))

    head = []
    if index:
        head.append(f"<th>{label(frame.index.name) if frame.index.name is not None else ''}</th>")
    head += [f"<th>{label(c)}</th>" for c in frame.columns]
    body = []
    for row_key, row in zip(frame.index, frame.itertuples(index=False, name=None), strict=True):
        cells = [f'<th scope="row">{label(row_key)}</th>'] if index else []
        for col, value in zip(frame.columns, row, strict=True):
            key = str(row_key) if format_by == "row" else str(col)
            text = _cell(key, formats, value)
            numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            cls = ' class="num"' if numeric or text == MISSING else ""
            cells.append(f"<td{cls}>{e(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{e(caption)}</caption>" if caption else ""
    return (f'<table>{cap}<thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def notes_html(notes: Iterable[str], *, cls: str = "notes") -> str:
    """A bulleted list of plain-text ``notes`` (escaped); empty when there is none."""
    items = [f"<li>{html.escape(str(n))}</li>" for n in notes if str(n).strip()]
    return f'<ul class="{html.escape(cls)}">' + "".join(items) + "</ul>" if items else ""


# ----------------------------------------------------------------------------- the page

_CSS = """
:root{--fg:#1d2430;--muted:#5b6575;--rule:#dde2ea;--head:#f4f6f9;--accent:#1f5fa8;--warn:#8a5a00}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);margin:0;background:#fff}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:24px;margin:0 0 4px}
.subtitle{color:var(--muted);margin:0 0 14px}
nav{font-size:13px;margin:0 0 18px;color:var(--muted)}
nav a{color:var(--accent);text-decoration:none;margin-right:14px}
section{border-top:1px solid var(--rule);padding:14px 0 6px}
h2{font-size:17px;margin:0 0 10px}
h3{font-size:14px;margin:14px 0 6px;color:var(--muted)}
table{border-collapse:collapse;margin:4px 0 14px;font-variant-numeric:tabular-nums}
caption{text-align:left;color:var(--muted);font-size:12px;padding-bottom:4px}
th,td{padding:4px 12px;border-bottom:1px solid var(--rule);text-align:left;vertical-align:top}
thead th{background:var(--head);font-weight:600;border-bottom:2px solid var(--rule)}
tbody th{font-weight:500}
td.num{text-align:right;white-space:nowrap}
figure{margin:6px 0 14px}
figure img{max-width:100%;height:auto;display:block}
figcaption{color:var(--muted);font-size:12px;margin-top:4px}
ul.notes{color:var(--warn);padding-left:20px}
p.empty{color:var(--muted);font-style:italic}
"""


def _slug(text: str, seen: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    slug, i = base, 2
    while slug in seen:
        slug, i = f"{base}-{i}", i + 1
    seen.add(slug)
    return slug


def page(title: str, sections: Sequence[tuple[str, str]], *, subtitle: str = "") -> str:
    """A self-contained HTML page: ``title`` as its heading (escaped), an optional ``subtitle``
    line (escaped), a table of contents, and one ``<section>`` per ``(heading, html)`` pair
    (the heading is escaped, the html is inserted as it is). No external resource is linked."""
    e = html.escape
    seen: set[str] = set()
    ids = [_slug(h, seen) for h, _ in sections]
    nav = " ".join(f'<a href="#{i}">{e(h)}</a>' for i, (h, _) in zip(ids, sections, strict=True))
    body = "".join(f'<section id="{i}"><h2>{e(h)}</h2>{content}</section>'
                   for i, (h, content) in zip(ids, sections, strict=True))
    sub = f'<p class="subtitle">{e(subtitle)}</p>' if subtitle else ""
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{e(title)}</title><style>{_CSS}</style></head>"
            f"<body><main><h1>{e(title)}</h1>{sub}<nav>{nav}</nav>{body}</main></body></html>\n")
