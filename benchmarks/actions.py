"""Corporate actions and a second bar source at universe scale (issue 15), through the CLI.

    .venv/bin/python benchmarks/actions.py                     # 1,000 symbols -> BENCHMARKS.md ("actions")
    .venv/bin/python benchmarks/actions.py --symbols 1000,3000
    .venv/bin/python benchmarks/actions.py --dry-run-size 20   # a quick check (-> /tmp/alpha-bench/actions-dry-run.md)

Per universe of N symbols (``benchmarks/universe.py``: GBM bars 2015-01-02..2024-12-31 as a
CSV folder), every step a subprocess of the venv's ``alpha`` measured from outside (wall, CPU
and peak RSS of the process tree, ``benchmarks/nightly.measure``), the factor step being
``alpha features build --family core`` (the family every price feature shares the actions
with; the TA-Lib grid adds the same per-symbol work 1,021 times wider):

- **A, bars only** (the baseline): ``alpha ingest csv`` of the folder, then the build;
- **B, with actions**: the same folder with an ``actions.csv`` (per symbol one 2:1 split and a
  quarterly cash dividend: about 41 actions each), ingest and build;
- **C, the next session** of B: one bar appended to every file, ingest, build;
- **D, late splits**: a 3:1 split three sessions back arrives for 1 % of the symbols after
  their features were published: ingest (known from now) and build (those symbols' rows from
  the ex-date on restated);
- **E, a second source**: a copy of the folder (source ``csv:<its name>``, ranked after the
  first by name) whose last 250 bars are 2 % off for 1 % of the symbols, ingested into A's
  home, then the build (nothing canonical changes: no row written) and ``alpha health`` (the
  disagreements);
- **F, the next session with two sources**: one bar appended to both folders, both ingested,
  the build.

The prices carry no real split: the actions exercise the machinery (storage, known times,
price scales, restatements), not a market.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import universe as U  # noqa: E402
from benchmarks.nightly import Step, fmt_gb, fmt_s, git_rev, log, measure  # noqa: E402

ALPHA = str(REPO / ".venv" / "bin" / "alpha")
SPLIT_RATIO, LATE_RATIO, DIVIDEND_EVERY, DIVIDEND_YIELD = 2.0, 3.0, 63, 0.004


def actions_csv(folder: Path, n: int, late: list[int] | None = None) -> int:
    """``actions.csv`` for symbols 0..n-1 (module doc); ``late``: symbols that also get a 3:1
    split three sessions before the last one. Returns the number of lines."""
    days = U.sessions()
    base = len(days) - 1
    lines = ["symbol,ex_date,split_ratio,cash_dividend"]
    for i in range(n):
        rng = np.random.default_rng([7, i])
        close = U.generate(i, len(days))["close"]
        k = int(rng.integers(250, base - 250))
        cash = {j: round(float(close[j - 1]) * DIVIDEND_YIELD, 4) for j in range(int(rng.integers(5, DIVIDEND_EVERY)), base, DIVIDEND_EVERY)}
        lines.append(f"{U.symbol(i)},{days[k]:%Y-%m-%d},{SPLIT_RATIO},{cash.pop(k, '')}")   # a split and a dividend: one line
        lines += [f"{U.symbol(i)},{days[j]:%Y-%m-%d},,{c}" for j, c in cash.items()]
    for i in late or []:
        lines.append(f"{U.symbol(i)},{days[base - 3]:%Y-%m-%d},{LATE_RATIO},")
    (folder / "actions.csv").write_text("\n".join(lines) + "\n")
    return len(lines) - 1


def second_source(base: Path, dest: Path, n: int) -> list[int]:
    """A copy of the folder whose last 250 bars are 2 % off for 1 % of the symbols."""
    U.working_copy(base, dest)
    off = U.revised_symbols(n, 0.01, seed=11)
    for i in off:
        path = dest / f"{U.symbol(i)}.csv"
        frame = pd.read_csv(path)
        tail = frame.index[-250:]
        for c in ("open", "high", "low", "close"):
            frame.loc[tail, c] = (frame.loc[tail, c] * 1.02).round(2)
        frame.to_csv(path, index=False)
    return off


def run(steps: list[Step], step: Step, env: dict, work: Path, show: bool) -> Step:
    log(f"  {step.name}: {' '.join(step.cmd[1:])}")
    measure(step, env, work / f"{len(steps):02d}-{re.sub(r'[^a-z0-9]+', '-', step.name.lower())}.log", show)
    log(f"    {step.wall:.1f} s wall, {step.cpu:.1f} s CPU, peak {step.peak_rss / 1e9:.2f} GB, rc {step.returncode}")
    steps.append(step)
    if not step.ok:
        raise SystemExit(f"{step.name} failed (rc {step.returncode}); see {step.log}")
    return step


def gold_rows(home: Path, view: str = "technicals") -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in (home / "gold" / view).glob("*.parquet"))


def universe(n: int, work: Path, show: bool) -> dict:
    base = U.base_universe(n, log=log)
    root = work / f"actions-{n}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    a_dir = U.working_copy(base, root / "a-primary")
    b_dir = U.working_copy(base, root / "with-actions")
    n_actions = actions_csv(b_dir, n)
    steps: list[Step] = []
    out = {"n": n, "actions": n_actions, "steps": steps}

    def alpha(home: Path, name: str, *args: str) -> Step:
        env = dict(os.environ, ALPHA_HOME=str(home), PYTHONUNBUFFERED="1")
        return run(steps, Step(n, name, [ALPHA, *args]), env, root, show)

    home_a, home_b = root / "home-a", root / "home-b"
    alpha(home_a, "A ingest, bars only", "ingest", "csv", "--path", str(a_dir))
    alpha(home_a, "A build core, bars only", "features", "build", "--family", "core")
    alpha(home_b, "B ingest, with actions", "ingest", "csv", "--path", str(b_dir))
    alpha(home_b, "B build core, with actions", "features", "build", "--family", "core")
    out["rows_b"] = gold_rows(home_b)
    U.append_next_session(b_dir, n)
    alpha(home_b, "C ingest, next session", "ingest", "csv", "--path", str(b_dir))
    alpha(home_b, "C build core, next session", "features", "build", "--family", "core")
    late = U.revised_symbols(n, 0.01, seed=5)
    actions_csv(b_dir, n, late)
    before = gold_rows(home_b)
    alpha(home_b, "D ingest, late splits (1 %)", "ingest", "csv", "--path", str(b_dir))
    alpha(home_b, "D build core, late splits", "features", "build", "--family", "core")
    out["late_symbols"], out["late_rows"] = len(late), gold_rows(home_b) - before
    c_dir = root / "b-secondary"
    off = second_source(base, c_dir, n)
    out["off_symbols"] = len(off)
    alpha(home_a, "E ingest, second source", "ingest", "csv", "--path", str(c_dir))
    before = gold_rows(home_a)
    alpha(home_a, "E build core, second source", "features", "build", "--family", "core")
    out["e_rows"] = gold_rows(home_a) - before
    alpha(home_a, "E health, disagreements", "health")
    report = sorted((home_a / "reports").rglob("*.json"))
    summary = json.loads(report[-1].read_text()) if report else {}
    found = summary.get("summary", {}).get("source_disagreements") or summary.get("source_disagreements") or {}
    out["disagreements"] = f"{found.get('bars', 0):,} bars ({found.get('fields', 0):,} prices)"
    U.append_next_session(a_dir, n)
    U.append_next_session(c_dir, n)
    alpha(home_a, "F ingest, next session, source 1", "ingest", "csv", "--path", str(a_dir))
    alpha(home_a, "F ingest, next session, source 2", "ingest", "csv", "--path", str(c_dir))
    alpha(home_a, "F build core, next session, two sources", "features", "build", "--family", "core")
    shutil.rmtree(root, ignore_errors=True)
    return out


def markdown(results: list[dict], started: pd.Timestamp) -> list[str]:
    load = os.getloadavg()
    lines = [
        "## actions",
        "",
        f"`benchmarks/actions.py` (issue 15), {started:%Y-%m-%d %H:%M} UTC, commit {git_rev()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, load {load[0]:.1f} at the end. "
        "Corporate actions and a second bar source through the CLI on generated universes (GBM, 2015..2024); "
        "the factor step is `alpha features build --family core` (module doc for each step).",
        "",
        "| symbols | step | wall | CPU | peak RSS |",
        "|---:|---|---:|---:|---:|",
    ]
    for r in results:
        for s in r["steps"]:
            lines.append(f"| {r['n']:,} | {s.name} | {fmt_s(s.wall)} | {fmt_s(s.cpu)} | {fmt_gb(s.peak_rss)} |")
    lines.append("")
    for r in results:
        by = {s.name: s for s in r["steps"]}
        a, b = by["A build core, bars only"], by["B build core, with actions"]
        ia, ib = by["A ingest, bars only"], by["B ingest, with actions"]
        c, f = by["C build core, next session"], by["F build core, next session, two sources"]
        lines += [
            f"- {r['n']:,} symbols, {r['actions']:,} actions: the first build with actions takes {b.wall / a.wall:.2f}x the "
            f"bars-only build ({fmt_s(b.wall)} vs {fmt_s(a.wall)}), the ingest {ib.wall / ia.wall:.2f}x; "
            f"late splits for {r['late_symbols']} symbols restate {r['late_rows']:,} rows of `technicals` in "
            f"{fmt_s(by['D build core, late splits'].wall)}; a second source with {r['off_symbols']} symbols 2 % off "
            f"writes {r['e_rows']:,} gold rows (nothing canonical changed) and the health report lists "
            f"{r['disagreements']} disagreements; the next session's build takes {fmt_s(f.wall)} with two sources "
            f"vs {fmt_s(c.wall)} with one.",
        ]
    return lines


def write_section(path: Path, lines: list[str]) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    section = "\n".join(lines).rstrip() + "\n"
    pattern = re.compile(r"^## actions\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    path.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", default="1000", help="universe sizes, comma-separated (default 1000)")
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"), help="the Markdown file whose 'actions' section is replaced")
    ap.add_argument("--dry-run-size", type=int, help="one tiny universe of this many symbols (-> /tmp/alpha-bench/actions-dry-run.md)")
    ap.add_argument("--work", default=str(U.CACHE), help="work folder")
    ap.add_argument("--show-output", action="store_true", help="stream the commands' output")
    args = ap.parse_args()
    started = pd.Timestamp.now(tz="UTC")
    sizes = [args.dry_run_size] if args.dry_run_size else [int(x) for x in args.symbols.split(",")]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for n in sizes:
        log(f"universe of {n:,} symbols")
        results.append(universe(n, work, args.show_output))
    out = work / "actions-dry-run.md" if args.dry_run_size else Path(args.out)
    write_section(out, markdown(results, started))
    log(f"-> {out}")


if __name__ == "__main__":
    main()
