"""Experiment specs and the plugin protocol: what a user writes, and the errors when it is wrong.

Pure and fast: no warehouse. User code lives in ``tmp_path`` folders, outside the repo."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from etl.core import plugins
from etl.core.errors import DeclarationError
from lifecycle.spec import SpecError, load_spec, parse_spec
from strategy.protocol import StrategyOutputError, check_weights, load_strategy

SPECS = Path(__file__).resolve().parents[1] / "lifecycle" / "specs"
BASE = """
name: demo_trend
strategy: trend_rsi
period: {start: 2010-01-04, end: 2012-12-31}
"""


def test_the_shipped_specs_parse_and_name_loadable_strategies():
    names = {}
    for path in sorted(SPECS.glob("*.yaml")):
        spec = load_spec(path)
        names[spec.name] = spec.kind
        strategy = load_strategy(spec.strategy, spec.params, spec.paths)
        assert strategy.kind == spec.kind, path
    assert names == {"equal_weight": "strategy", "trend_rsi": "strategy", "xs_momentum": "strategy", "learned_rank": "model"}


def test_defaults_and_hash_ignore_layout_but_not_values():
    spec = parse_spec(BASE)
    assert (spec.name, spec.study, spec.kind, spec.universe, spec.fees, spec.slippage, spec.seed) == \
        ("demo_trend", "demo_trend", "strategy", "listed", 0.0005, 0.0005, 0)
    assert spec.start == pd.Timestamp("2010-01-04") and spec.end == pd.Timestamp("2012-12-31")
    reordered = parse_spec("period:\n  end: 2012-12-31\n  start: 2010-01-04\nstrategy: trend_rsi\n# a comment\nname: demo_trend\n")
    assert reordered.sha256 == spec.sha256
    assert parse_spec(BASE + "seed: 1\n").sha256 != spec.sha256
    assert parse_spec(BASE.replace("2012-12-31", "2012-12-28")).sha256 != spec.sha256


@pytest.mark.parametrize(("extra", "message"), [
    ("sede: 3\n", "unknown key(s) ['sede']"),
    ("model: strategy.learned:LearnedRank\n", "exactly one of strategy"),
    ("costs: {fees: 0.5}\n", "costs.fees: 0.5 must be a number in [0.0, 0.1]"),
    ("costs: {fee: 0.001}\n", "costs has unknown key(s) ['fee']"),
    ("replay: {start: 2013-01-02}\n", "replay needs both start: and end:"),
    ("seed: -1\n", "seed must be a non-negative integer"),
    ("symbols: AAPL\n", "symbols must be a list"),
    ("paths: [./nowhere]\n", "is not a folder"),
    ("spec_version: 2\n", "spec_version 2 is not supported"),
])
def test_a_wrong_spec_says_which_key_and_what_it_must_be(extra, message, tmp_path):
    with pytest.raises(SpecError) as err:
        parse_spec(BASE + extra, path=tmp_path / "spec.yaml")
    assert message in str(err.value)


def test_period_dates_are_checked():
    with pytest.raises(SpecError, match="period.end 2009-01-02 is not after period.start 2010-01-04"):
        parse_spec(BASE.replace("2012-12-31", "2009-01-02"))
    with pytest.raises(SpecError, match="is not a date"):
        parse_spec(BASE.replace("2012-12-31", "someday"))
    with pytest.raises(SpecError, match="name 'a b' may hold"):
        parse_spec(BASE.replace("demo_trend", "'a b'"))


USER_STRATEGY = '''
import pandas as pd

class Contrarian:
    """Holds the symbols whose RSI is below a threshold, equally weighted."""
    FEATURES = ["technicals:rsi_14"]

    def __init__(self, *, below: float = 30.0):
        self.below = below
        self.NAME = f"contrarian_{int(below)}"

    def target_positions(self, features, time_col="decision_time"):
        hold = features["rsi_14"] < self.below
        n = hold.groupby(features[time_col]).transform("sum")
        return (hold / n.where(n > 0)).fillna(0.0)

NOT_A_STRATEGY = 42

def broken(**params):
    return object()

class Leaky:
    FEATURES = ["technicals:rsi_14"]
    def target_positions(self, features, time_col="decision_time"):
        return features["rsi_14"] / 10.0
'''


@pytest.fixture
def user_code(tmp_path, monkeypatch):
    folder = tmp_path / "mylab_code"
    (folder / "mylab").mkdir(parents=True)
    (folder / "mylab" / "__init__.py").write_text("")
    (folder / "mylab" / "strats.py").write_text(textwrap.dedent(USER_STRATEGY))
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield folder
    for name in [m for m in sys.modules if m == "mylab" or m.startswith("mylab.")]:
        del sys.modules[name]


def test_a_users_class_loads_from_a_folder_outside_the_repo_with_params(user_code):
    strategy = load_strategy("mylab.strats:Contrarian", {"below": 40}, [str(user_code)])
    assert (strategy.NAME, strategy.kind, strategy.FEATURES, strategy.params) == \
        ("contrarian_40", "strategy", ["technicals:rsi_14"], {"below": 40})
    assert strategy.source_sha256 == plugins.source_sha256(sys.modules["mylab.strats"])
    frame = pd.DataFrame({"symbol": ["A", "B", "C", "A"], "decision_time": [1, 1, 1, 2], "rsi_14": [20.0, 35.0, 80.0, 50.0]})
    assert strategy.target_positions(frame).tolist() == [0.5, 0.5, 0.0, 0.0]


def test_a_wrong_plugin_gets_a_clear_error(user_code):
    paths = [str(user_code)]
    with pytest.raises(DeclarationError, match="not a reference of the form package.module:object"):
        load_strategy("mylab/strats.py", None, paths)
    with pytest.raises(DeclarationError, match="'nolab.strats' cannot be imported .*No module named 'nolab'"):
        load_strategy("nolab.strats:Contrarian", None, paths)
    with pytest.raises(DeclarationError, match="mylab.strats has no 'Contrarion' .*Contrarian"):
        load_strategy("mylab.strats:Contrarion", None, paths)
    with pytest.raises(DeclarationError, match="is a int, not a strategy"):
        load_strategy("mylab.strats:NOT_A_STRATEGY", None, paths)
    with pytest.raises(DeclarationError, match="cannot be made with params .*unexpected keyword argument 'above'"):
        load_strategy("mylab.strats:Contrarian", {"above": 3}, paths)
    with pytest.raises(DeclarationError, match="calling it returned object"):
        load_strategy("mylab.strats:broken", None, paths)
    with pytest.raises(DeclarationError, match="takes no params"):
        load_strategy("trend_rsi", {"cap": 60})


def test_weights_that_cannot_be_traded_are_refused(user_code):
    leaky = load_strategy("mylab.strats:Leaky", None, [str(user_code)])
    frame = pd.DataFrame({"symbol": ["A", "B"], "decision_time": [1, 1], "rsi_14": [6.0, 7.0]})
    with pytest.raises(StrategyOutputError, match="weights sum to 1.300000 at 1; at most 1"):
        leaky.target_positions(frame)
    for bad, message in ((pd.Series([0.5, float("nan")]), "is not a finite number"),
                         (pd.Series([0.5, -0.1]), "negative weight -0.1 for B"),
                         (pd.Series([0.5]), "returned 1 weights for 2 rows"),
                         ([0.5, 0.5], "must return a pandas Series")):
        with pytest.raises(StrategyOutputError, match=message):
            check_weights(bad, frame, "decision_time", "x")
