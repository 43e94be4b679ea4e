"""The options family's declarations: one :class:`~etl.factors.spec.Factor` per group of
outputs of the ``options_daily`` view."""

from __future__ import annotations

from etl.factors.options.realised import RV_WINDOW
from etl.factors.options.surface import ATM_BAND, MIN_EXPIRY_DAYS, RANK_MIN_PERIODS, RANK_WINDOW, TARGET_DAYS
from etl.factors.spec import Factor, Output

VIEW = "options_daily"
FAMILY = "options"
MIN_CONTRACTS = 20           # fewer usable contracts than this: chain_thin

_CHAIN = ("option_quotes.bid", "option_quotes.ask", "option_quotes.close", "option_quotes.expiry",
          "option_quotes.strike", "option_quotes.right")
_SPOT = ("bars_daily.close", "option_quotes.underlying_close")
_CARRY = ("rates.rate", "corporate_actions.price_factor", "corporate_actions.split_factor")
_WHEN = "the chain date's session close + bar delay (the later of the chain's and the underlying bar's availability)"


def _f(name, outputs, inputs, warmup, description, availability=_WHEN, **params):
    return Factor(name=name, family=FAMILY, view=VIEW, outputs=outputs, inputs=inputs, warmup=warmup,
                  availability=availability, description=description, params=tuple(sorted(params.items())))


FACTORS: tuple[Factor, ...] = (
    _f("opt_iv_atm", (
        Output("iv_atm_30d", "float64", "30-day constant-maturity ATM (at-the-forward) implied vol, Bjerksund-Stensland 2002 on mid/last prices"),
        Output("iv_atm_60d", "float64", "60-day constant-maturity ATM implied vol"),
        Output("iv_term_slope", "float64", "iv_atm_60d - iv_atm_30d (positive: upward-sloping term structure)"),
    ), _CHAIN + _SPOT + _CARRY, 0, "constant-maturity ATM implied volatility and its 30-to-60-day slope",
        target_days=TARGET_DAYS, min_expiry_days=MIN_EXPIRY_DAYS, atm_band=ATM_BAND),
    _f("opt_skew_25d", (
        Output("iv_skew_25d", "float64", "30-day IV of the -25-delta put minus IV of the +25-delta call"),
    ), _CHAIN + _SPOT + _CARRY, 0, "25-delta risk reversal (put minus call IV) at 30 days"),
    _f("opt_iv_rank", (
        Output("iv_rank_252", "float64", "(iv_atm_30d - min) / (max - min) over the trailing 252 sessions, today included"),
        Output("iv_pct_252", "float64", "share of the trailing 252 sessions (today excluded) whose iv_atm_30d is below today's"),
    ), _CHAIN + _SPOT + _CARRY, RANK_WINDOW - 1, f"IV rank and percentile; NaN with fewer than {RANK_MIN_PERIODS} valid IVs in the window",
        window=RANK_WINDOW, min_periods=RANK_MIN_PERIODS),
    _f("opt_flow", (
        Output("pc_volume_ratio", "float64", "put volume / call volume over the whole chain"),
        Output("pc_oi_ratio", "float64", "put open interest / call open interest over the whole chain"),
    ), ("option_quotes.volume", "option_quotes.open_interest", "option_quotes.right"), 0, "put/call volume and open-interest ratios"),
    _f("opt_atm_greeks", (
        Output("atm_call_delta_30d", "float64", "delta of a 30-day call struck at the forward, priced at iv_atm_30d"),
        Output("atm_call_gamma_30d", "float64", "gamma (per $1 of spot) of that call"),
        Output("atm_call_vega_30d", "float64", "vega of that call, $ per volatility point"),
        Output("atm_call_theta_30d", "float64", "theta of that call, $ per calendar day"),
    ), _CHAIN + _SPOT + _CARRY, 0, "greeks of the synthetic 30-day ATM American call"),
    _f("opt_realised_vol", (
        Output("rv_cc_21", "float64", "close-to-close realised vol, 21 sessions, annualised sqrt(252)"),
        Output("rv_parkinson_21", "float64", "Parkinson high-low realised vol, 21 sessions, annualised"),
        Output("rv_yz_21", "float64", "Yang-Zhang realised vol (overnight + open-close + Rogers-Satchell), 21 sessions, annualised"),
    ), ("bars_daily.open", "bars_daily.high", "bars_daily.low", "bars_daily.close", "corporate_actions.split_factor",
        "corporate_actions.price_factor"), RV_WINDOW, "realised volatility of the underlying on chain dates", window=RV_WINDOW),
    _f("opt_iv_rv_spread", (
        Output("iv_rv_spread", "float64", "iv_atm_30d - rv_cc_21"),
    ), _CHAIN + _SPOT + _CARRY + ("bars_daily.close",), RV_WINDOW, "implied minus realised volatility"),
    _f("opt_coverage", (
        Output("n_contracts", "int64", "contracts with a usable price and an implied volatility"),
        Output("chain_thin", "bool", f"fewer than {MIN_CONTRACTS} usable contracts, or no ATM IV on one side of 30 days"),
        Output("chain_stale", "bool", "the chain repeats the previous chain date's rows exactly (a vendor copy): no IV, flow or counts"),
        Output("spot_from_chain", "bool", "no daily bar: spot is the chain's underlying row and realised vol is missing"),
        Output("close_price_share", "float64", "share of usable contracts priced from the vendor's close instead of a bid/ask mid"),
    ), _CHAIN + _SPOT, 0, "coverage flags of the chain", min_contracts=MIN_CONTRACTS),
    _f("opt_vendor_iv", (
        Output("iv_vendor_atm_30d", "float64", "iv_atm_30d built the same way from the vendor's implied_volatility column"),
    ), ("option_quotes.implied_volatility", "option_quotes.expiry", "option_quotes.strike", "option_quotes.right") + _SPOT + _CARRY,
        0, "the vendor's IV through the same ATM 30-day construction, for comparison"),
)

OUTPUTS: tuple[Output, ...] = tuple(o for f in FACTORS for o in f.outputs)


def output_columns() -> list[str]:
    return [o.name for o in OUTPUTS]
