"""Take the Prefect UI screenshots of the README (headless Chromium from the Debian packages).

    apt-get install chromium
    .venv/bin/python docs/img/shoot.py

Starts what docker-compose starts, directly: ``prefect server`` (UI on) on a fresh
PostgreSQL database, Polygon's daily endpoint over local HTTP from the recorded
responses (tests/polygon_daily.py), ``alpha serve`` for a scratch warehouse; then
``alpha run backfill`` and ``alpha run nightly`` for two sessions and a rerun
through the API, and photographs the deployments, the completed nightly run and
the rerun's summary artifact into docs/img/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
OUT = Path(__file__).resolve().parent
ALPHA = str(Path(sys.executable).with_name("alpha"))

from tests.polygon_daily import API_KEY, PolygonDaily, write_config  # noqa: E402
from tests.servers import postgres_database, prefect_server  # noqa: E402


def shoot(url: str, path: Path, size: str) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no chromium on PATH: apt-get install chromium")
    subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={size}", "--virtual-time-budget=20000", f"--screenshot={path}", url],
                   check=True, capture_output=True, timeout=120)
    print(f"wrote {path}")


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="shoot_"))
    with postgres_database("shoot_prefect") as db, prefect_server(tmp / "server", db, ui=True) as api, PolygonDaily() as poly:
        home = tmp / "warehouse"
        write_config(home, None)
        env = {**os.environ, "PREFECT_API_URL": api, "ALPHA_HOME": str(home),
               "ALPHA_POLYGON_BASE_URL": poly.url, "POLYGON_API_KEY": API_KEY}
        serve = subprocess.Popen([ALPHA, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        try:
            while len(httpx.post(f"{api}/deployments/filter", json={}).json()) < 2:
                time.sleep(0.5)
            for cmd in (["backfill", "polygon", "--start", "2014-05-01", "--end", "2014-07-25", "--chunk-size", "1"],
                        ["nightly", "--session", "2014-07-29"], ["nightly", "--session", "2014-07-30"],
                        ["nightly", "--session", "2014-07-30"]):
                subprocess.run([ALPHA, "run", *cmd], env=env, check=True)
            runs = httpx.post(f"{api}/flow_runs/filter", json={"sort": "START_TIME_ASC"}).json()
            nightly = [r for r in runs if r["state"]["type"] == "COMPLETED" and r["parameters"].get("session")]
            arts = httpx.post(f"{api}/artifacts/filter", json={"artifacts": {"key": {"any_": ["nightly-summary"]}}}).json()
            rerun_art = next(a for a in arts if a["flow_run_id"] == nightly[-1]["id"])
            ui = api.removesuffix("/api")
            shoot(f"{ui}/deployments", OUT / "prefect-deployments.png", "1600,700")
            shoot(f"{ui}/runs/flow-run/{nightly[1]['id']}", OUT / "prefect-nightly-run.png", "1600,1000")
            shoot(f"{ui}/artifacts/artifact/{rerun_art['id']}", OUT / "prefect-nightly-summary.png", "1400,1100")
            print(json.dumps({r["name"]: r["parameters"].get("session") for r in nightly}))
        finally:
            serve.terminate()
            serve.wait(timeout=30)


if __name__ == "__main__":
    main()
