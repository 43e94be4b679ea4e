"""The research lifecycle at universe scale (issue 17), measured through the CLI as a user runs it.

    .venv/bin/python benchmarks/research.py                    # 500 symbols -> BENCHMARKS.md
    .venv/bin/python benchmarks/research.py --symbols 200 --out /tmp/research.md

A generated universe (``benchmarks/universe.py``: N symbols, every XNYS session 2015..2024, seeded
GBM prices) is ingested and built once (``alpha ingest csv`` + ``alpha nightly``, not timed here:
see ``benchmarks/nightly.py``). Then, each step a subprocess measured from outside (wall, CPU of
the process tree, peak RSS: ``benchmarks.nightly.measure``):

- the baseline: ``alpha backtest`` of the same strategy, universe and period (the vectorbt
  backtest and its tearsheet, nothing else);
- ``alpha experiment run SPEC``: the backtest plus the evaluation (metrics, regime slices,
  bootstrap interval, deflated Sharpe), the fingerprints of every frame read, the tearsheet, the
  registry (runs, performance, signals);
- ``alpha experiment verify ID`` (a rerun and the comparison), ``alpha experiment replay ID``
  (the live loop over one quarter against its backtest), ``alpha factor-report`` on the period.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import universe as U  # noqa: E402
from benchmarks.nightly import Step, fmt_gb, fmt_s, measure  # noqa: E402

ALPHA = str(Path(sys.executable).with_name("alpha"))
SPEC = """name: xs_bench
study: bench
strategy: xs_rank
params: {params}
period: {{start: {start}, end: {end}}}
replay: {{start: {rstart}, end: {rend}}}
benchmark: buy_and_hold
seed: 1
"""
START, END, RSTART, REND = "2016-01-04", "2024-06-28", "2024-07-01", "2024-09-30"
PARAMS = "{factors: {'technicals:rsi_14': -1.0, 'technicals:ret_21d': 1.0}, top_fraction: 0.2}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=500)
    ap.add_argument("--work", default=str(U.CACHE))
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    args = ap.parse_args()
    n = args.symbols
    work = Path(args.work) / f"research-{n}"
    home = work / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHA_", "PREFECT_API"))}
    env.update({"ALPHA_HOME": str(home), "PREFECT_HOME": str(home / "prefect")})
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    if not (home / "gold" / "_runs.json").is_file():
        base = U.base_universe(n)
        home.mkdir(parents=True, exist_ok=True)
        for name, cmd in (("ingest", [ALPHA, "ingest", "csv", "--path", str(base)]),
                          ("nightly", [ALPHA, "nightly", "--session", "2024-12-31"])):
            step = measure(Step(n, name, cmd), env, logs / f"setup-{name}.log")
            print(f"setup {name}: {fmt_s(step.wall)}", flush=True)
            if step.returncode:
                sys.exit(f"setup {name} failed; see {logs / f'setup-{name}.log'}")
    spec = work / "xs_bench.yaml"
    spec.write_text(SPEC.format(start=START, end=END, rstart=RSTART, rend=REND, params=PARAMS))
    steps = [Step(n, "alpha backtest (baseline)", [ALPHA, "backtest", "--strategy", "xs_rank", "--params", PARAMS, "--start", START,
                                                   "--end", END]),
             Step(n, "alpha experiment run", [ALPHA, "experiment", "run", str(spec)])]
    results = []
    for step in steps:
        results.append(measure(step, env, logs / f"{len(results)}.log"))
        print(f"{step.name}: {fmt_s(step.wall)}", flush=True)
    text = (logs / "1.log").read_text()
    match = re.search(r"run (\S+-[0-9a-f]{10}):", text)
    if not match:
        sys.exit(f"experiment run failed:\n{text[-2000:]}")
    run_id = match.group(1)
    for name, cmd in (("alpha experiment verify", [ALPHA, "experiment", "verify", run_id]),
                      ("alpha experiment replay (one quarter)", [ALPHA, "experiment", "replay", run_id]),
                      ("alpha factor-report technicals:rsi_14", [ALPHA, "factor-report", "technicals:rsi_14", "--start", START,
                                                                 "--end", END])):
        results.append(measure(Step(n, name, cmd), env, logs / f"{len(results)}.log"))
        print(f"{name}: {fmt_s(results[-1].wall)} (rc {results[-1].returncode})", flush=True)
    summary = re.search(r"Sharpe .*trial\(s\)", text)
    lines = [f"## Research lifecycle at {n:,} symbols (`benchmarks/research.py`)", "",
             f"{time.strftime('%Y-%m-%d')}, {platform.node()}, {os.cpu_count()} cores; generated universe of {n:,} symbols "
             f"(seeded GBM, every XNYS session), strategy xs_rank (top 20 % by RSI(14) reversal and 21-session momentum), "
             f"{START}..{END} ({'listed' } universe), replay {RSTART}..{REND}. Each step a subprocess through the CLI.", "",
             "| step | wall | CPU | peak RSS | exit |", "|---|---|---|---|---|"]
    for s in results:
        lines.append(f"| {s.name} | {fmt_s(s.wall)} | {fmt_s(s.cpu)} | {fmt_gb(s.peak_rss)} | {s.returncode} |")
    base, run = results[0], results[1]
    lines += ["", f"The experiment run costs {run.wall / base.wall:.2f}x the bare backtest "
              f"(+{run.wall - base.wall:.0f} s: the evaluation, the fingerprint of every frame read, the tearsheet and the "
              f"registry's signals). Run: {run_id}" + (f"; {summary.group(0)}" if summary else "") + ".", ""]
    out = Path(args.out)
    body = out.read_text() if out.exists() else "# Benchmarks\n"
    head = f"## Research lifecycle at {n:,} symbols"
    if head in body:
        start = body.index(head)
        nxt = body.find("\n## ", start + 1)
        body = body[:start] + body[nxt + 1:] if nxt != -1 else body[:start]
    out.write_text(body.rstrip() + "\n\n" + "\n".join(lines))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
