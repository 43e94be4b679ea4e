"""The research lifecycle end to end through the CLI, as a user runs it, on a copy of the session
warehouse (real Lean data, built by the real nightly):

spec -> run -> verify -> qualify (one spec fails a hard gate in the high-volatility regime, the
other passes) -> shadow replay -> promotion (refused for the failing one, with the reason) ->
``alpha live --once`` runs the promoted one and refuses the other; then one gold value changed
makes verify fail, naming the data fingerprint.
"""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from html.parser import HTMLParser

import pandas as pd
import pytest

from tests.test_cli import ALPHA, run

pytestmark = pytest.mark.slow

PERIOD = "period: {start: 2005-01-03, end: 2012-12-31}\nreplay: {start: 2013-01-02, end: 2013-03-28}\n"
SPECS = {
    # always invested: the baseline
    "equal_weight": "strategy: xs_rank\nparams: {factors: {'technicals:ret_1d': 1.0}, top_fraction: 1.0}\n",
    # steps aside in high volatility: passes the hard gates
    "steady": "strategy: trend_rsi_regime\nparams: {high_vol_weight: 0.0}\n",
    # fully invested in the top half by momentum: fails them in 2008
    "bold": "strategy: xs_rank\nparams: {top_fraction: 0.5}\n",
}


@pytest.fixture(scope="module")
def lab(warehouse, tmp_path_factory):
    """A private copy of the session warehouse and the specs in a folder outside the repo."""
    root = tmp_path_factory.mktemp("lab")
    home = root / "home"
    shutil.copytree(warehouse["settings"].home, home, symlinks=True, ignore=shutil.ignore_patterns("*.lock"))
    specs = root / "specs"
    specs.mkdir()
    for name, body in SPECS.items():
        (specs / f"{name}.yaml").write_text(f"name: {name}\nstudy: chain\nseed: 3\n{body}{PERIOD}")
    return home, specs


def _run_id(out) -> str:
    match = re.search(r"run (\S+-[0-9a-f]{10}):", out.stdout)
    assert match, out.stdout + out.stderr
    return match.group(1)


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


def _rendered(path) -> _Images:
    import base64
    import io

    import matplotlib.image as mpimg

    page = _Images()
    page.feed(path.read_text())
    assert page.images, path
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        pixels = mpimg.imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), format="png")
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    return page


@pytest.fixture(scope="module")
def chain(lab):
    home, specs = lab
    ids = {}
    for name in SPECS:
        out = run([ALPHA, "experiment", "run", str(specs / f"{name}.yaml")], home)
        assert out.returncode == 0, out.stdout + out.stderr
        ids[name] = _run_id(out)
    return home, specs, ids


def test_runs_are_written_with_manifest_metrics_and_a_tearsheet(chain):
    home, _, ids = chain
    folder = home / "experiments" / ids["steady"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["run_id"] == ids["steady"]
    assert manifest["strategy"]["ref"] == "trend_rsi_regime" and manifest["strategy"]["params"] == {"high_vol_weight": 0.0}
    assert len(manifest["spec_sha256"]) == 64 and len(manifest["data_fingerprint"]) == 64
    assert set(manifest["views"]) >= {"bars_daily", "technicals", "regime_daily"}
    assert manifest["code_version"]["source_sha256"] and manifest["reads"]
    metrics = json.loads((folder / "metrics.json").read_text())
    returns = pd.read_parquet(folder / "returns.parquet")
    assert metrics["all"]["sessions"] == len(returns.dropna())
    assert set(metrics["regimes"]["regime_vol"]) == {"low vol", "normal vol", "high vol"}
    decisions = pd.read_parquet(folder / "decisions.parquet")
    assert decisions.groupby("decision_time")["target_weight"].sum().max() <= 1 + 1e-9
    # the trials of the study: the third run is deflated against the two before it
    third = json.loads((home / "experiments" / ids["bold"] / "metrics.json").read_text())
    assert third["deflated_sharpe"]["n_trials"] == 3
    page = _rendered(folder / "tearsheet.html")
    text = " ".join(page.text)
    assert "Sharpe" in text and "%" in text
    assert not re.search(r"\d\.\d{5,}", text), "raw floats in the tearsheet"
    listing = run([ALPHA, "experiment", "list"], home)
    assert listing.returncode == 0 and all(i in listing.stdout for i in ids.values())


def test_the_same_spec_on_the_same_data_is_the_same_run(chain):
    home, specs, ids = chain
    again = run([ALPHA, "experiment", "run", str(specs / "steady.yaml")], home)
    assert again.returncode == 0, again.stderr
    assert _run_id(again) == ids["steady"] and "already there" in again.stdout


def test_qualify_replay_promote_and_only_the_promoted_one_trades(chain):
    home, _, ids = chain
    bold = run([ALPHA, "experiment", "qualify", ids["bold"], "--baseline", "equal_weight"], home)
    assert bold.returncode == 1, bold.stdout + bold.stderr
    assert re.search(r"\[hard FAIL\] high_vol_max_(drawdown|exposure)", bold.stdout)
    report = json.loads((home / "experiments" / ids["bold"] / f"qualification-vs-{ids['equal_weight']}.json").read_text())
    failed = [c["name"] for c in report["checks"] if c["kind"] == "hard" and not c["passed"]]
    assert failed and set(failed) <= {"high_vol_max_drawdown", "high_vol_max_exposure"}
    _rendered(home / "experiments" / ids["bold"] / f"qualification-vs-{ids['equal_weight']}.html")
    refused = run([ALPHA, "experiment", "promote", ids["bold"], "--tier", "candidate", "--reason", "looks good"], home)
    assert refused.returncode == 1
    assert "cannot promote" in refused.stderr and "in high volatility" in refused.stderr

    steady = run([ALPHA, "experiment", "qualify", "steady", "--baseline", ids["equal_weight"]], home)
    assert steady.returncode == 0, steady.stdout + steady.stderr
    assert "QUALIFIED" in steady.stdout and "[hard FAIL]" not in steady.stdout
    early = run([ALPHA, "experiment", "promote", ids["steady"], "--reason", "qualified"], home)
    assert early.returncode == 1 and "no shadow replay" in early.stderr
    replay = run([ALPHA, "experiment", "replay", ids["steady"]], home)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "replay == backtest" in replay.stdout and ", 0 differ" in replay.stdout
    production_first = run([ALPHA, "experiment", "promote", ids["steady"], "--tier", "production", "--reason", "x"], home)
    assert production_first.returncode == 1 and "never a candidate" in production_first.stderr
    promoted = run([ALPHA, "experiment", "promote", ids["steady"], "--tier", "candidate", "--reason",
                    "hard gates pass; replay equal fill by fill"], home)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr

    live = run([ALPHA, "live", "--strategy", "steady", "--once"], home)
    assert live.returncode == 0, live.stdout + live.stderr
    assert f"run {ids['steady']}, promoted to candidate" in live.stdout
    denied = run([ALPHA, "live", "--strategy", "bold", "--once"], home)
    assert denied.returncode == 1
    assert "no promotion at tier 'candidate'" in denied.stderr and "alpha experiment promote" in denied.stderr

    from etl.core.config import load_settings
    from lifecycle.registry import open_registry
    from strategy.ledger import open_ledger

    settings = load_settings(home)
    registry = open_registry(settings)
    try:
        promotions = registry.promotions()
        manifest = json.loads((home / "experiments" / ids["steady"] / "manifest.json").read_text())
        assert promotions[["strategy", "run_id", "tier"]].values.tolist() == [["steady", ids["steady"], "candidate"]]
        assert promotions["spec_sha256"].iloc[0] == manifest["spec_sha256"]
        assert promotions["data_fingerprint"].iloc[0] == manifest["data_fingerprint"]
        assert registry.latest_replay(ids["steady"]).passed
    finally:
        registry.dispose()
    ledger = open_ledger(settings)
    try:
        assert len(ledger.decisions("trend_rsi_regime")) == 1      # the promoted strategy decided once
        assert ledger.decisions("xs_rank").empty
    finally:
        ledger.dispose()


def test_verify_reproduces_bit_for_bit_and_names_a_changed_gold_value(chain):
    home, _, ids = chain
    same = run([ALPHA, "experiment", "verify", ids["steady"]], home)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "identical" in same.stdout

    # one value of one gold part of the technicals view, in the run's period, changed and its
    # record in gold/_runs.json made to match (as a rebuild that computed another value would
    # leave it: the integrity check then has nothing to say, only the data fingerprint does)
    import pyarrow.parquet as pq

    from etl.core.config import load_settings
    from etl.gold import layout

    parts = sorted((home / "gold").glob("technicals/**/*.parquet"))
    target = None
    for part in parts:
        table = pq.read_table(part)
        frame = table.to_pandas()
        mask = (frame["symbol"] == "AAPL") & frame["rsi_14"].notna()
        mask &= (frame["event_timestamp"] > pd.Timestamp("2010-06-01", tz="UTC")) & (
            frame["event_timestamp"] < pd.Timestamp("2010-07-01", tz="UTC"))
        if mask.any():
            target = part
            i = mask.to_numpy().nonzero()[0][0]
            frame.loc[frame.index[i], "rsi_14"] = 99.0
            pq.write_table(pa_table(frame, table.schema), part)
            settings = load_settings(home)
            runs = layout.read_runs(settings)
            runs["parts"]["technicals"][part.name] = layout.describe_part(part)
            layout.write_runs(settings, runs)
            break
    assert target is not None, "no gold part holds AAPL's rsi_14 of June 2010"
    changed = run([ALPHA, "experiment", "verify", ids["steady"]], home)
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert "data fingerprint changed" in changed.stderr and "read #" in changed.stderr


def pa_table(frame: pd.DataFrame, schema):
    import pyarrow as pa

    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


def test_a_strategy_that_is_not_promoted_is_refused_with_what_to_run(lab):
    home, _ = lab
    out = run([ALPHA, "live", "--strategy", "never_run", "--once"], home)
    assert out.returncode == 1
    message = " ".join(out.stderr.split())
    assert "strategy 'never_run' has no promotion at tier 'candidate'" in message
    assert "alpha experiment run SPEC" in message and "alpha experiment replay" in message


def test_a_spec_with_a_typo_is_refused_before_any_work(lab):
    home, specs = lab
    bad = specs / "typo.yaml"
    bad.write_text(textwrap.dedent("""\
        name: typo
        strategy: trend_rsi
        period: {start: 2005-01-03, end: 2006-12-29}
        cost: {fees: 0.001}
    """))
    out = run([ALPHA, "experiment", "run", str(bad)], home)
    assert out.returncode == 1 and "unknown key(s) ['cost']" in out.stderr
    assert not list(home.glob("experiments/typo*")), "nothing written for a refused spec"
