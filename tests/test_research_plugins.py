"""A user's own strategy and model, in a folder outside the repo, through spec, evaluation and
shadow replay (in process, on a copy of the session warehouse: real data, real backtests).

The model's walk-forward audit is in the run's manifest: every fit trained only on labels known
at its training time (checked here again on every fold)."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap

import pandas as pd
import pytest

from etl.core import plugins

pytestmark = pytest.mark.slow

USER_CODE = {
    "mylab/__init__.py": "",
    "mylab/strats.py": '''
        """A user's strategy: oversold names, equally weighted (no import of the warehouse)."""


        class Contrarian:
            FEATURES = ["technicals:rsi_14"]

            def __init__(self, *, below: float = 40.0):
                self.below = below
                self.NAME = "contrarian"

            def target_positions(self, features, time_col="decision_time"):
                hold = features["rsi_14"] < self.below
                n = hold.groupby(features[time_col]).transform("sum")
                return (hold / n.where(n > 0)).fillna(0.0)
    ''',
    "mylab/models.py": '''
        """A user's model: a plain least-squares fit of 5-session forward returns, walk-forward."""
        from sklearn.linear_model import LinearRegression

        from research.walkforward import WalkForward


        def _learner(seed):
            return LinearRegression()


        class Linear(WalkForward):
            def __init__(self, *, horizon: int = 5):
                super().__init__(learner_factory=_learner, features=["technicals:rsi_14", "technicals:ret_5d"],
                                 horizon=horizon, retrain_every=126, min_train_rows=200, top_fraction=0.5,
                                 name="user_linear")
    ''',
}
SPEC = """
name: {name}
study: user_lab
{kind}: {ref}
params: {params}
paths: [../code]
period: {{start: 2009-01-02, end: 2013-12-31}}
replay: {{start: 2014-01-02, end: 2014-02-28}}
seed: 11
"""


@pytest.fixture(scope="module")
def user_lab(warehouse, tmp_path_factory):
    from etl.core.config import load_settings

    root = tmp_path_factory.mktemp("user_lab")
    shutil.copytree(warehouse["settings"].home, root / "home", symlinks=True, ignore=shutil.ignore_patterns("*.lock"))
    for rel, text in USER_CODE.items():
        path = root / "code" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    (root / "specs").mkdir()
    (root / "specs" / "contrarian.yaml").write_text(SPEC.format(name="contrarian", kind="strategy", ref="mylab.strats:Contrarian",
                                                                params="{below: 45}"))
    (root / "specs" / "linear.yaml").write_text(SPEC.format(name="linear", kind="model", ref="mylab.models:Linear",
                                                            params="{horizon: 5}"))
    saved = list(sys.path)
    yield load_settings(root / "home"), root
    sys.path[:] = saved
    for name in [m for m in sys.modules if m == "mylab" or m.startswith("mylab.")]:
        del sys.modules[name]


def test_a_users_strategy_runs_through_spec_evaluation_and_replay(user_lab):
    from lifecycle.experiment import run_experiment
    from lifecycle.promote import shadow_replay

    settings, root = user_lab
    result = run_experiment(settings, root / "specs" / "contrarian.yaml")
    manifest = result.manifest
    assert manifest["strategy"] == {"name": "contrarian", "kind": "strategy", "ref": "mylab.strats:Contrarian",
                                    "params": {"below": 45}, "features": ["technicals:rsi_14"]}
    assert manifest["code_version"]["strategy_sha256"] == plugins.source_sha256(sys.modules["mylab.strats"])
    assert result.metrics["all"]["sessions"] > 1000 and result.metrics["regimes"]
    assert (result.path / "tearsheet.html").is_file()
    outcome = shadow_replay(settings, result.run_id)
    assert outcome.passed, outcome.detail
    assert outcome.fills > 0 and outcome.differing == 0


def test_a_users_model_trains_walk_forward_on_known_labels_and_replays_its_artifact(user_lab):
    from lifecycle.experiment import run_experiment
    from lifecycle.promote import shadow_replay

    settings, root = user_lab
    result = run_experiment(settings, root / "specs" / "linear.yaml")
    manifest = result.manifest
    assert manifest["strategy"]["kind"] == "model" and manifest["strategy"]["ref"] == "mylab.models:Linear"
    folds = manifest["folds"]
    assert len(folds) >= 5 and folds[-1]["final"] is True
    for fold in folds:   # every fold: no training label became known after its training time
        assert pd.Timestamp(fold["max_known"]) <= pd.Timestamp(fold["train_end"]), fold
        assert fold["n_train"] >= 200
    assert (result.path / "model").is_file() and json.loads((result.path / "model.json").read_text())["sha256"]
    decisions = pd.read_parquet(result.path / "decisions.parquet")
    first_fit = pd.Timestamp(folds[0]["train_end"])
    assert decisions.loc[decisions["decision_time"] < first_fit, "target_weight"].eq(0).all()
    assert decisions.loc[decisions["decision_time"] >= first_fit, "target_weight"].gt(0).any()
    # the replay trades the saved artifact, in the live loop and in its backtest alike
    outcome = shadow_replay(settings, result.run_id)
    assert outcome.passed, outcome.detail
