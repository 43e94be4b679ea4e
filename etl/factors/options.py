"""Options factors: implied volatility, greeks, term structure, skew, flow and
realised volatility for one underlying, from its end-of-day option chains.

Pure: frames in, frames out. The one adapter, ``etl.gold.families.load_rates``, reads the
risk-free rate file for ``etl.family_gold`` and is kept apart at the bottom.

Model
-----
US equity options are American. Prices come from the Bjerksund-Stensland
(2002) approximation (Haug, *The Complete Guide to Option Pricing Formulas*,
2nd ed., 2007, section 3.1.4), vectorised in numpy: one call prices every
contract of every chain at once. Its bivariate normal is Genz's (2004)
Gauss-Legendre form of Drezner-Wesolowsky (the correlations are always
+-sqrt((sqrt 5 - 1) / 2) = +-0.786). The value returned is the larger of that
exercise strategy's value and the European (never-exercise) value, both lower
bounds of the American price; a call on a stock without dividends is priced
by Black-Scholes-Merton exactly. Implied volatility inverts the price for all
contracts at once: Newton on the Black-Scholes-Merton price (analytic vega)
gives the start, then a safeguarded Newton on the American price (the model's
forward-difference vega) with a bisection bracket [0.001, 5] that catches any
step leaving it; no per-contract loop. A price at or below the exercise value
(no time value, so no information about volatility) or outside the model's
range has no IV (NaN). Greeks are central finite differences of the same
model; vega per volatility point (0.01) and theta per calendar day, the
conventions of the vendor's greek columns.

Inputs, as known at the chain's date t
--------------------------------------
- price: the mid of bid and ask when both are > 0, else the vendor's close
  (``close_price_share``: the Lean chains carry no quotes, so all of it; their
  close is the last trade for a contract that traded, and for one that did
  not, an end-of-day value the vendor made, evidently from quotes).
- spot: the underlying's daily close of session t (raw: the scale traded at
  t); without a bar, the chain's own underlying row (``spot_from_chain``;
  realised volatility is then missing). The chain's row is not preferred: in
  Lean's AAPL files it is an odd print (633.40 on 2014-06-02, close 628.65).
- strikes in the scale of t: after a split (ratio R, ex-date e <= t, from the
  corporate-action rows) a vendor may still list a pre-split contract at its
  old strike K beside its adjusted twin at K / R (Lean's AAPL chains after
  2014-06-09 repeat the 650 call's last pre-split print next to the 92.86
  call). Such a row (twin listed to the cent in the same expiry and right, K
  farther from the spot than K / R, expiry within ~3 years of e) is dropped.
- stale chains: a chain whose every row repeats the previous chain date's is a
  vendor copy (Lean's GOOG 20151231.csv = 20151230.csv): ``chain_stale``, and
  no IV, flow or count comes from it.
- rate: the latest ``rates`` row dated on or before t (decimal, used as a
  continuously compounded rate). ``load_rates`` gives Lean's Fed primary
  credit rate, the rate QuantConnect's option models use; it covers
  2003-01-09 onwards (the T-bill curves in the shared data stop in 2017-03).
- dividend yield: continuous, from the dividends with ex-date in the 350
  days up to t, q = -ln(prod(1 - D_i / P_i)) (ratios of consecutive Lean
  price factors; QuantConnect's DividendYieldProvider rule); 0 without
  corporate-action rows. An approximation: a discrete dividend inside an
  option's life is spread over the year.
- time to expiry: calendar days from t to the expiry date, / 365.

Outputs per chain date
----------------------
An expiry's ATM IV is the median IV of the calls and puts at the 3 listed
strikes on each side of its forward F = S e^{(r-q)T} (within 10 % of F; a
strike on both sides needed): last-trade prints can be stale, and a median
of a symmetric set shrugs them off without the smile's slope biasing it.
Expiries under 7 days are skipped. The constant-maturity value at D days
interpolates linearly in total variance sigma^2 T between the nearest
expiries on either side of D (never extrapolated: missing, and
``chain_thin``, when one side has none). The 25-delta skew is, at 30 days the
same way, the median IV of out-of-the-money puts with model delta within
0.10 of -0.25 minus that of calls within 0.10 of +0.25 (deltas at each
contract's own IV; contracts on both sides of the target needed). The ATM
greeks are those of a synthetic 30-day American call struck at the 30-day
forward and priced at ``iv_atm_30d``. Realised volatilities use the last 21
sessions of the underlying's bars adjusted for splits and dividends (ratios
between sessions involve only actions already known; ``etl.factors.core``).

Every output row is knowable at the latest availability of what it used:
the chain's rows, the bars, the rate row and the corporate actions, and
(through IV rank) every earlier row.

Checks (tests/test_options_factors.py): Hull's Black-Scholes example, Hull's
binomial American put, a binomial tree on real contracts (< 0.002 of vol),
QuantConnect's IV column (where its smile is coherent, GOOG 2016-02-05:
median |diff| 0.004, 81 % within 0.01; the rest of the vendor's column in
these files is not reproducible from the chain's prices by any model: its
IVs jump by ~0.5-1.0 between adjacent strikes) and the textbook RV formulas.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.special import log_ndtr, ndtr

from etl.core import clock
from etl.core.errors import AlphaError
from etl.factors.core import cumulative_factors
from etl.factors.spec import Factor, Output

VIEW = "options_daily"
FAMILY = "options"
TARGET_DAYS = (30, 60)
MIN_EXPIRY_DAYS = 7          # expiries closer than this are skipped for ATM and skew
ATM_BAND = 0.10              # strikes around the forward must lie within 10 %
ATM_STRIKES = 3              # listed strikes used on each side of the forward
WING_BAND = 0.10             # deltas within 0.10 of +-0.25 make the 25-delta wings
MIN_CONTRACTS = 20           # fewer usable contracts than this: chain_thin
RV_WINDOW = 21
RANK_WINDOW = 252
RANK_MIN_PERIODS = 200       # valid IVs needed in the 252-session window
DIVIDEND_WINDOW_DAYS = 350   # QuantConnect's DividendYieldProvider window
SPLIT_MIN_RATIO = 1.2        # smaller split factors (GOOG's 0.997) do not move strikes
SPLIT_LIFE_DAYS = 1100       # a listed contract expires within ~3 years: older splits cannot leave twins
VOL_LO, VOL_HI = 1e-3, 5.0
ANNUAL = 252.0
SQRT5_T1 = 0.5 * (math.sqrt(5.0) - 1.0)  # t1 / T in Bjerksund-Stensland 2002
NEW_YORK = "America/New_York"


class OptionsInputError(AlphaError, ValueError):
    """The option chain, bars or rates handed to the options factors are unusable."""


# ------------------------------------------------------------------ declarations

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


# ------------------------------------------------------------------ pricing kernels

_GL_X, _GL_W = np.polynomial.legendre.leggauss(20)


def bivariate_normal_cdf(a, b, rho) -> np.ndarray:
    """P(X < a, Y < b) for standard normals with correlation ``rho`` (|rho| < 0.925),
    elementwise: Genz's Gauss-Legendre form of the Drezner-Wesolowsky integral."""
    a, b, rho = np.broadcast_arrays(np.asarray(a, float), np.asarray(b, float), np.asarray(rho, float))
    if np.any(np.abs(rho) >= 0.925):
        raise OptionsInputError("bivariate_normal_cdf handles |rho| < 0.925 only")
    h, k = -a, -b                                   # upper-orthant form
    hs = ((h * h + k * k) / 2.0)[..., None]
    hk = (h * k)[..., None]
    if rho.size and np.all(rho == rho.flat[0]):      # one correlation (always, in Bjerksund-Stensland)
        asr = float(np.arcsin(rho.flat[0]))
        sn = np.sin(asr * (1.0 + _GL_X) / 2.0)
        integral = np.exp((sn * hk - hs) / (1.0 - sn * sn)) @ _GL_W * asr
    else:
        asr = np.arcsin(rho)[..., None]
        sn = np.sin(asr * (1.0 + _GL_X) / 2.0)
        integral = (np.exp((sn * hk - hs) / (1.0 - sn * sn)) * _GL_W).sum(axis=-1) * asr[..., 0]
    upper = integral / (4.0 * np.pi) + ndtr(-h) * ndtr(-k)
    return np.clip(upper, 0.0, 1.0)


def _gbs(S, K, T, r, b, v, is_call):
    """Generalised Black-Scholes-Merton (cost of carry b = r - q)."""
    sq = v * np.sqrt(T)
    d1 = (np.log(S / K) + (b + 0.5 * v * v) * T) / sq
    d2 = d1 - sq
    carry, disc = np.exp((b - r) * T), np.exp(-r * T)
    call = S * carry * ndtr(d1) - K * disc * ndtr(d2)
    put = K * disc * ndtr(-d2) - S * carry * ndtr(-d1)
    return np.where(is_call, call, put)


def bsm_price(S, K, T, r, q, sigma, is_call) -> np.ndarray:
    """European Black-Scholes-Merton price with a continuous dividend yield ``q``."""
    S, K, T, r, q, sigma, is_call = np.broadcast_arrays(*(np.asarray(x, float) for x in (S, K, T, r, q, sigma)), np.asarray(is_call, bool))
    return _gbs(S, K, T, r, r - q, sigma, is_call)


def _phi(lnS, T, gamma, H, I, r, b, v, log_pre):  # noqa: E741 - Haug's names
    v2 = v * v
    sq = v * np.sqrt(T)
    lam = (-r + gamma * b + 0.5 * gamma * (gamma - 1.0) * v2) * T
    d = -(lnS - np.log(H) + (b + (gamma - 0.5) * v2) * T) / sq
    kappa = 2.0 * b / v2 + 2.0 * gamma - 1.0
    lnIS = np.log(I) - lnS
    base = log_pre + lam
    return np.exp(base + log_ndtr(d)) - np.exp(base + kappa * lnIS + log_ndtr(d - 2.0 * lnIS / sq))


def _log_m(a, b, rho):
    with np.errstate(divide="ignore"):
        return np.log(bivariate_normal_cdf(a, b, rho))


def _psi(lnS, T, gamma, H, I2, I1, t1, r, b, v, log_pre):
    v2 = v * v
    mu = (b + (gamma - 0.5) * v2)
    s1, s2 = v * np.sqrt(t1), v * np.sqrt(T)
    lnI1, lnI2, lnH = np.log(I1), np.log(I2), np.log(H)
    e1 = (lnS - lnI1 + mu * t1) / s1
    e2 = (2 * lnI2 - lnS - lnI1 + mu * t1) / s1
    e3 = (lnS - lnI1 - mu * t1) / s1
    e4 = (2 * lnI2 - lnS - lnI1 - mu * t1) / s1
    f1 = (lnS - lnH + mu * T) / s2
    f2 = (2 * lnI2 - lnS - lnH + mu * T) / s2
    f3 = (2 * lnI1 - lnS - lnH + mu * T) / s2
    f4 = (lnS + 2 * lnI1 - lnH - 2 * lnI2 + mu * T) / s2
    rho = math.sqrt(SQRT5_T1)   # sqrt(t1 / T), the same for every contract
    lam = (-r + gamma * b + 0.5 * gamma * (gamma - 1.0) * v2) * T
    kappa = 2.0 * b / v2 + 2.0 * gamma - 1.0
    base = log_pre + lam
    return (np.exp(base + _log_m(-e1, -f1, rho))
            - np.exp(base + kappa * (lnI2 - lnS) + _log_m(-e2, -f2, rho))
            - np.exp(base + kappa * (lnI1 - lnS) + _log_m(-e3, -f3, -rho))
            + np.exp(base + kappa * (lnI1 - lnI2) + _log_m(-e4, -f4, -rho)))


def _bs2002_call(S, X, T, r, b, v):
    """Bjerksund-Stensland (2002) American call, arrays of equal shape."""
    out = _gbs(S, X, T, r, b, v, np.ones(S.shape, bool))   # b >= r: never exercised early
    early = b < r
    if not early.any():
        return out
    S, X, T, r, b, v = (x[early] for x in (S, X, T, r, b, v))
    v2 = v * v
    t1 = SQRT5_T1 * T
    beta = (0.5 - b / v2) + np.sqrt((b / v2 - 0.5) ** 2 + 2.0 * r / v2)
    b_inf = beta / (beta - 1.0) * X
    b0 = np.maximum(X, r / (r - b) * X)
    scale = X * X / ((b_inf - b0) * b0)
    h1 = -(b * t1 + 2.0 * v * np.sqrt(t1)) * scale
    h2 = -(b * T + 2.0 * v * np.sqrt(T)) * scale
    with np.errstate(over="ignore", invalid="ignore"):
        I1 = b0 + (b_inf - b0) * (1.0 - np.exp(h1))
        I2 = b0 + (b_inf - b0) * (1.0 - np.exp(h2))
    with np.errstate(invalid="ignore"):
        exercise = S >= I2
    lnS = np.log(S)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        la1 = np.log(np.maximum(I1 - X, 0.0)) + beta * (lnS - np.log(I1))   # log(alpha1 * S^beta)
        la2 = np.log(np.maximum(I2 - X, 0.0)) + beta * (lnS - np.log(I2))   # log(alpha2 * S^beta)
        lX = np.log(X)
        price = (np.exp(la2)
                 - _phi(lnS, t1, beta, I2, I2, r, b, v, la2)
                 + _phi(lnS, t1, 1.0, I2, I2, r, b, v, lnS)
                 - _phi(lnS, t1, 1.0, I1, I2, r, b, v, lnS)
                 - _phi(lnS, t1, 0.0, I2, I2, r, b, v, lX)
                 + _phi(lnS, t1, 0.0, I1, I2, r, b, v, lX)
                 + _phi(lnS, t1, beta, I1, I2, r, b, v, la1)
                 - _psi(lnS, T, beta, I1, I2, I1, t1, r, b, v, la1)
                 + _psi(lnS, T, 1.0, I1, I2, I1, t1, r, b, v, lnS)
                 - _psi(lnS, T, 1.0, X, I2, I1, t1, r, b, v, lnS)
                 - _psi(lnS, T, 0.0, I1, I2, I1, t1, r, b, v, lX)
                 + _psi(lnS, T, 0.0, X, I2, I1, t1, r, b, v, lX))
    # Both this strategy and never exercising early are lower bounds of the American
    # value; a degenerate boundary (I2 < X in extreme carry at tiny volatility) falls back to the latter.
    valid = np.isfinite(I1) & np.isfinite(I2) & (I2 >= X) & (I1 >= X)
    euro = out[early]
    amer = np.where(valid, np.where(exercise, S - X, price), euro)
    out[early] = np.maximum(np.where(np.isfinite(amer), amer, euro), np.maximum(euro, S - X))
    return out


def american_price(S, K, T, r, q, sigma, is_call) -> np.ndarray:
    """Bjerksund-Stensland (2002) price of American calls and puts, elementwise.

    Puts use the put-call transformation P(S, K, T, r, b) = C(K, S, T, r - b, -b)."""
    S, K, T, r, q, sigma, is_call = np.broadcast_arrays(*(np.asarray(x, float) for x in (S, K, T, r, q, sigma)), np.asarray(is_call, bool))
    S, K, T, r, q, sigma = (np.array(x, float) for x in (S, K, T, r, q, sigma))
    b = r - q
    out = np.full(S.shape, np.nan)
    c, p = is_call, ~is_call
    if c.any():
        out[c] = _bs2002_call(S[c], K[c], T[c], r[c], b[c], sigma[c])
    if p.any():
        out[p] = _bs2002_call(K[p], S[p], T[p], r[p] - b[p], -b[p], sigma[p])
    return out


def _bsm_vega(S, K, T, r, q, sigma):
    sq = sigma * np.sqrt(T)
    d1 = (np.log(S / K) + (r - q + 0.5 * sigma * sigma) * T) / sq
    return S * np.exp(-q * T - 0.5 * d1 * d1) * np.sqrt(T / (2.0 * np.pi))


def _newton(target, model, vega, lo, hi, x, tol, max_iter):
    """Vectorised safeguarded Newton: ``model(x, j)`` and ``vega(x, j, fx)`` on the
    elements ``j`` still active; a step leaving the bracket [lo, hi] (which shrinks
    around the root every iteration) is replaced by its midpoint. NaN where not
    converged."""
    active = np.ones(target.size, bool)
    for _ in range(max_iter):
        j = np.flatnonzero(active)
        if j.size == 0:
            break
        fx = model(x[j], j) - target[j]
        done = (np.abs(fx) <= tol * np.maximum(target[j], 1.0)) | (hi[j] - lo[j] < 1e-12)
        above = fx > 0
        hi[j] = np.where(above, x[j], hi[j])
        lo[j] = np.where(above, lo[j], x[j])
        live = ~done
        step = np.full(j.size, np.nan)
        if live.any():
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                step[live] = x[j][live] - fx[live] / vega(x[j][live], j[live], fx[live])
        bad = ~np.isfinite(step) | (step <= lo[j]) | (step >= hi[j])
        x[j] = np.where(done, x[j], np.where(bad, 0.5 * (lo[j] + hi[j]), step))
        active[j[done]] = False
    return np.where(active, np.nan, x)


def implied_vol(price, S, K, T, r, q, is_call, *, tol: float = 1e-10, max_iter: int = 100) -> np.ndarray:
    """American implied volatility of every contract at once.

    A safeguarded Newton iteration on the Bjerksund-Stensland price, started
    from the Black-Scholes-Merton implied volatility of the same price (itself
    found by Newton with the analytic vega); the American step uses the
    model's forward-difference vega, and any step that would leave the
    bracket [0.001, 5] (shrunk around the root at every iteration) is
    replaced by bisection. NaN where the price is not positive, ``T <= 0``,
    the price is at or below the exercise value (no time value: volatility
    is not identified), or no volatility in the bracket reproduces it."""
    arrays = np.broadcast_arrays(*(np.asarray(x, float) for x in (price, S, K, T, r, q)), np.asarray(is_call, bool))
    price, S, K, T, r, q, is_call = (np.atleast_1d(a) for a in arrays)
    out = np.full(price.shape, np.nan)
    intrinsic = np.where(is_call, S - K, K - S)
    ok = (np.isfinite(price) & (price > 0) & np.isfinite(S) & (S > 0) & (K > 0) & (T > 0) & np.isfinite(r) & np.isfinite(q)
          & (price - np.maximum(intrinsic, 0.0) > 1e-9 * S))
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return out
    S_, K_, T_, r_, q_, c_, p = S[idx], K[idx], T[idx], r[idx], q[idx], is_call[idx], price[idx]

    def american(sig, j):
        return american_price(S_[j], K_[j], T_[j], r_[j], q_[j], sig, c_[j])

    lo, hi = np.full(idx.size, VOL_LO), np.full(idx.size, VOL_HI)
    f_lo, f_hi = american(lo, slice(None)) - p, american(hi, slice(None)) - p
    inside = (f_lo <= 0) & (f_hi >= 0)
    # European start: cheap, and within a few per cent of the American answer
    euro = _newton(p, lambda sig, j: _gbs(S_[j], K_[j], T_[j], r_[j], r_[j] - q_[j], sig, c_[j]),
                   lambda sig, j, fx: _bsm_vega(S_[j], K_[j], T_[j], r_[j], q_[j], sig),
                   lo.copy(), hi.copy(), np.clip(np.sqrt(2.0 * np.pi / T_) * p / S_, 0.05, 2.0), 1e-6, 50)
    start = np.where(np.isfinite(euro), np.clip(euro, VOL_LO * 1.01, VOL_HI * 0.99), 0.3)
    h = 1e-5

    def vega(sig, j, fx):
        return (american(sig + h, j) - p[j] - fx) / h

    sol = _newton(p, american, vega, lo, hi, start, tol, max_iter)
    out[idx] = np.where(inside, sol, np.nan)
    return out


def greeks(S, K, T, r, q, sigma, is_call) -> dict[str, np.ndarray]:
    """Delta, gamma, vega (per 0.01 of vol) and theta (per calendar day) of the
    American model by central differences."""
    S, K, T, r, q, sigma, is_call = np.broadcast_arrays(*(np.asarray(x, float) for x in (S, K, T, r, q, sigma)), np.asarray(is_call, bool))

    def px(s=S, t=T, v=sigma):
        return american_price(s, K, t, r, q, v, is_call)

    hs = 1e-4 * S
    up, mid, dn = px(s=S + hs), px(), px(s=S - hs)
    dv, dt = 1e-4, 1e-4
    t_dn = np.maximum(T - dt, T / 2.0)
    return {
        "delta": (up - dn) / (2.0 * hs),
        "gamma": (up - 2.0 * mid + dn) / (hs * hs),
        "vega": (px(v=sigma + dv) - px(v=sigma - dv)) / (2.0 * dv) * 0.01,
        "theta": (px(t=t_dn) - px(t=T + dt)) / (T + dt - t_dn) / 365.0,
    }


def model_delta(S, K, T, r, q, sigma, is_call) -> np.ndarray:
    S, K, T, r, q, sigma, is_call = np.broadcast_arrays(*(np.asarray(x, float) for x in (S, K, T, r, q, sigma)), np.asarray(is_call, bool))
    hs = 1e-3 * S
    return (american_price(S + hs, K, T, r, q, sigma, is_call) - american_price(S - hs, K, T, r, q, sigma, is_call)) / (2.0 * hs)


# ------------------------------------------------------------------ realised volatility

def _rolling(values: np.ndarray, window: int, how: str) -> np.ndarray:
    s = pd.Series(values)
    r = s.rolling(window, min_periods=window)
    return (r.std(ddof=1) if how == "std" else r.var(ddof=1) if how == "var" else r.mean()).to_numpy()


def rv_close_to_close(close, window: int = RV_WINDOW) -> np.ndarray:
    """sqrt(252) * sample std (n - 1) of the last ``window`` log close-to-close returns."""
    c = np.asarray(close, float)
    lr = np.full(c.shape, np.nan)
    lr[1:] = np.log(c[1:] / c[:-1])
    return _rolling(lr, window, "std") * np.sqrt(ANNUAL)


def rv_parkinson(high, low, window: int = RV_WINDOW) -> np.ndarray:
    """Parkinson (1980): sqrt(252 / (4 ln 2) * mean of ln(H/L)^2) over ``window`` sessions."""
    hl = np.log(np.asarray(high, float) / np.asarray(low, float))
    return np.sqrt(_rolling(hl * hl, window, "mean") * ANNUAL / (4.0 * np.log(2.0)))


def rv_yang_zhang(open_, high, low, close, window: int = RV_WINDOW) -> np.ndarray:
    """Yang and Zhang (2000): var(overnight) + k var(open-to-close) + (1 - k) mean(Rogers-Satchell),
    k = 0.34 / (1.34 + (n + 1) / (n - 1)), sample variances with n - 1, annualised by 252."""
    o, h, lo, c = (np.asarray(x, float) for x in (open_, high, low, close))
    over = np.full(o.shape, np.nan)
    over[1:] = np.log(o[1:] / c[:-1])
    oc = np.log(c / o)
    rs = np.log(h / c) * np.log(h / o) + np.log(lo / c) * np.log(lo / o)
    n = window
    k = 0.34 / (1.34 + (n + 1.0) / (n - 1.0))
    var = _rolling(over, n, "var") + k * _rolling(oc, n, "var") + (1.0 - k) * _rolling(rs, n, "mean")
    return np.sqrt(var * ANNUAL)


# ------------------------------------------------------------------ IV rank

def iv_rank_percentile(sessions, values, *, window: int = RANK_WINDOW, min_periods: int = RANK_MIN_PERIODS,
                       calendar: str = "XNYS") -> tuple[np.ndarray, np.ndarray]:
    """IV rank and percentile of each value over the trailing ``window`` exchange
    sessions ending at its own session (rows sorted by session, one per session).

    rank = (v - min) / (max - min) over the window's valid values, today included;
    percentile = share of the window's other valid values strictly below today's.
    NaN when today's value is missing, the window holds fewer than ``min_periods``
    valid values, or max == min."""
    v = np.asarray(values, float)
    days = pd.DatetimeIndex(sessions)
    if len(days) == 0:
        return np.array([]), np.array([])
    cal = clock.get_calendar(calendar).sessions
    pos = np.searchsorted(cal.values, days.values, side="left")   # session ordinal (a non-session maps to the next one)
    rank, pct = np.full(v.shape, np.nan), np.full(v.shape, np.nan)
    start = np.searchsorted(pos, pos - window + 1, side="left")
    for i in range(len(v)):
        if not np.isfinite(v[i]):
            continue
        w = v[start[i]: i + 1]
        w = w[np.isfinite(w)]
        if w.size < min_periods:
            continue
        lo, hi = w.min(), w.max()
        if hi > lo:
            rank[i] = (v[i] - lo) / (hi - lo)
        others = w.size - 1
        if others > 0:
            pct[i] = float((w < v[i]).sum()) / others
    return rank, pct


# ------------------------------------------------------------------ carry, scale

def _events(factor_rows: pd.DataFrame | None) -> pd.DataFrame:
    """One row per corporate action: ex_date, split ratio R (new shares per old),
    dividend ratio (1 - D/P), and when it was known."""
    cols = ["ex_date", "split_ratio", "div_ratio", "known"]
    if factor_rows is None or len(factor_rows) == 0:
        return pd.DataFrame(columns=cols)
    f = factor_rows.sort_values("factor_date", kind="stable").reset_index(drop=True)
    split = f["split_factor"].to_numpy(float)
    price = f["price_factor"].to_numpy(float)
    nxt_s = np.append(split[1:], 1.0)
    nxt_p = np.append(price[1:], 1.0)
    if "ex_date" in f:
        ex = pd.to_datetime(f["ex_date"])
        if getattr(ex.dt, "tz", None) is not None:
            ex = ex.dt.tz_convert(NEW_YORK).dt.tz_localize(None)
    else:   # Lean's rule: the row's date is the last session before the ex-date
        ex = pd.Series(clock.next_session(pd.to_datetime(f["factor_date"])))
    if "event_timestamp" in f:
        known = _utc_naive(f["event_timestamp"])
    else:   # known from the ex-date's start in New York
        known = _utc_naive(pd.DatetimeIndex(ex).tz_localize(NEW_YORK))
    return pd.DataFrame({"ex_date": pd.DatetimeIndex(ex).normalize(), "split_ratio": nxt_s / split, "div_ratio": price / nxt_p,
                         "known": known})


def dividend_yield(dates, factor_rows: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
    """Continuous yield at each date from the dividends with ex-date in the 350 days
    up to it: -ln(prod(1 - D/P)); and the latest knowledge time of those rows
    (NaT when none)."""
    dates = pd.DatetimeIndex(dates)
    ev = _events(factor_rows)
    q = np.zeros(len(dates))
    known = np.full(len(dates), np.datetime64("NaT"), dtype="datetime64[us]")
    if ev.empty:
        return q, known
    ev = ev[np.abs(np.log(ev["div_ratio"].to_numpy(float))) > 1e-12]
    ex = ev["ex_date"].to_numpy()
    logs = np.log(ev["div_ratio"].to_numpy(float))
    kn = ev["known"].to_numpy().astype("datetime64[us]")
    for i, d in enumerate(dates.values):
        m = (ex <= d) & (ex > d - np.timedelta64(DIVIDEND_WINDOW_DAYS, "D"))
        if m.any():
            q[i] = -logs[m].sum()
            known[i] = kn[m].max()
    return q, known


def _old_scale_rows(chain: pd.DataFrame, splits: pd.DataFrame) -> np.ndarray:
    """Rows still in a pre-split strike scale. For a split of ratio R with ex-date e on
    or before the chain date, a contract that could have been listed before e
    (expiry within SPLIT_LIFE_DAYS after e) is in the old scale when the same date,
    expiry and right also list its adjusted twin at K / R (to the cent) and K is
    farther from the spot than K / R (so a genuine new strike like 70 beside a
    genuine 10 is kept)."""
    drop = np.zeros(len(chain), bool)
    if splits.empty or chain.empty:
        return drop
    date, expiry, right = chain["date"].to_numpy(), chain["expiry"].to_numpy(), chain["right"].to_numpy()
    strike, spot = chain["strike"].to_numpy(float), chain["spot"].to_numpy(float)
    cents = np.round(strike * 100).astype(np.int64)
    have = set(zip(date, expiry, right, cents, strict=True))
    life = np.timedelta64(SPLIT_LIFE_DAYS, "D")
    for ev in splits.itertuples():
        e = np.datetime64(pd.Timestamp(ev.ex_date), "us")
        R = float(ev.split_ratio)
        applies = (date >= e) & (expiry >= e) & (expiry <= e + life)
        if not applies.any():
            continue
        j = np.flatnonzero(applies)
        twin = np.round(strike[j] / R * 100).astype(np.int64)
        found = np.array([(d, x, r, t) in have for d, x, r, t in zip(date[j], expiry[j], right[j], twin, strict=True)], bool)
        with np.errstate(invalid="ignore", divide="ignore"):
            farther = np.abs(np.log(strike[j] / spot[j])) > np.abs(np.log(strike[j] / R / spot[j]))
        drop[j] |= found & (twin != cents[j]) & farther
    return drop


# ------------------------------------------------------------------ per contract

def _asof(dates: pd.DatetimeIndex, frame: pd.DataFrame, date_col: str, value_col: str, known_col: str):
    if frame is None or len(frame) == 0:
        return np.full(len(dates), np.nan), np.full(len(dates), np.datetime64("NaT"), dtype="datetime64[us]")
    f = frame.sort_values(date_col, kind="stable")
    pos = np.searchsorted(f[date_col].to_numpy(), dates.values, side="right") - 1
    vals = f[value_col].to_numpy(float)
    kn = f[known_col].to_numpy()
    got = pos >= 0
    out_v = np.where(got, vals[np.maximum(pos, 0)], np.nan)
    out_k = np.where(got, kn[np.maximum(pos, 0)], np.datetime64("NaT"))
    return out_v, out_k.astype("datetime64[us]")


def _normal_rates(rates: pd.DataFrame | None) -> pd.DataFrame:
    if rates is None or len(rates) == 0:
        return pd.DataFrame({"date": pd.Series(dtype="datetime64[us]"), "rate": pd.Series(dtype=float), "known": pd.Series(dtype="datetime64[us]")})
    missing = {"date", "rate"} - set(rates.columns)
    if missing:
        raise OptionsInputError(f"rates needs columns date and rate (decimal, e.g. 0.0075); missing {sorted(missing)}")
    d = pd.to_datetime(rates["date"])
    if getattr(d.dt, "tz", None) is not None:
        d = d.dt.tz_convert(NEW_YORK).dt.tz_localize(None)
    d = d.dt.normalize()
    if "event_timestamp" in rates:
        known = pd.to_datetime(rates["event_timestamp"], utc=True)
    else:   # an effective date is known from its start in New York
        known = d.dt.tz_localize(NEW_YORK).dt.tz_convert("UTC")
    out = pd.DataFrame({"date": d.to_numpy(), "rate": rates["rate"].to_numpy(float),
                        "known": known.dt.tz_localize(None).to_numpy().astype("datetime64[us]")})
    return out[np.isfinite(out["rate"])].reset_index(drop=True)


def _utc_naive(values) -> np.ndarray:
    s = pd.to_datetime(pd.Series(values), utc=True)
    return s.dt.tz_localize(None).to_numpy().astype("datetime64[us]")


def _prepare_bars(bars: pd.DataFrame | None) -> pd.DataFrame:
    cols = ["session", "open", "high", "low", "close", "known"]
    if bars is None or len(bars) == 0:
        return pd.DataFrame({c: pd.Series(dtype="datetime64[us]" if c in ("session", "known") else float) for c in cols})
    b = bars.copy()
    b["session"] = pd.to_datetime(b["session"]).dt.normalize()
    known = _utc_naive(b["event_timestamp"])
    if "known_timestamp" in b:
        known = np.maximum(known, _utc_naive(b["known_timestamp"]))
    b["known"] = known
    b = b.sort_values(["session", "known"], kind="stable").drop_duplicates("session", keep="first")
    for c in ("open", "high", "low", "close"):
        b[c] = pd.to_numeric(b[c], errors="coerce").astype(float)
    return b[cols].reset_index(drop=True)


_CHAIN_FIELDS = ["expiry", "strike", "right", "open", "high", "low", "close", "bid", "ask", "volume", "open_interest"]


def _stale_chains(q: pd.DataFrame, dates: pd.DatetimeIndex) -> np.ndarray:
    """True for a chain whose every contract row (prices, volume, open interest)
    repeats the previous chain date's: a vendor copy, not that day's market
    (Lean's GOOG 20151231.csv repeats 20151230.csv). Unknowable for the first date."""
    cols = [c for c in _CHAIN_FIELDS if c in q]
    rows = pd.util.hash_pandas_object(q[cols], index=False).to_numpy()
    sig = pd.Series(rows).groupby(q["date"].to_numpy()).agg(lambda h: (tuple(sorted(h)))).reindex(dates)
    stale = np.zeros(len(dates), bool)
    for i in range(1, len(dates)):
        stale[i] = sig.iloc[i] == sig.iloc[i - 1]
    return stale


def chain_ivs(quotes: pd.DataFrame, bars: pd.DataFrame | None, rates: pd.DataFrame | None,
              factor_rows: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-contract prices, implied vols and model deltas, and the per-date inputs.

    Returns ``(contracts, days)``. ``contracts``: the quote rows with ``days``
    (calendar days to expiry), ``T``, ``spot``, ``rate``, ``q``, ``price``,
    ``price_source`` ("mid", "close" or ""), ``in_scale``, ``iv``, ``delta``,
    ``vendor_iv`` (the vendor's column, NaN below 1e-4: its floor of 1e-7
    means "not solved"). ``days``: one row per chain date with ``spot``,
    ``spot_from_chain``, ``rate``, ``q`` and ``known`` (UTC, naive), the
    latest availability of every input the date uses."""
    need = {"date", "expiry", "strike", "right", "close", "event_timestamp"}
    missing = need - set(quotes.columns)
    if missing:
        raise OptionsInputError(f"option quotes miss columns {sorted(missing)}")
    if "underlying" in quotes and quotes["underlying"].nunique() > 1:
        raise OptionsInputError(f"compute one underlying at a time, got {sorted(quotes['underlying'].unique())}")
    q = quotes.copy()
    q["date"] = pd.to_datetime(q["date"]).dt.normalize()
    q["expiry"] = pd.to_datetime(q["expiry"]).dt.normalize()
    q["right"] = q["right"].astype(str).str.upper()
    q["_known"] = _utc_naive(q["event_timestamp"])
    for c in ("bid", "ask", "close", "volume", "open_interest", "implied_volatility", "underlying_close"):
        q[c] = pd.to_numeric(q[c], errors="coerce").astype(float) if c in q else np.nan
    q = q.sort_values(["date", "expiry", "strike", "right", "_known"], kind="stable")
    q = q.drop_duplicates(["date", "expiry", "strike", "right"], keep="first").reset_index(drop=True)

    dates = pd.DatetimeIndex(sorted(q["date"].unique()))
    chain_known = q.groupby("date")["_known"].max().reindex(dates).to_numpy()
    stale_day = _stale_chains(q, dates)

    b = _prepare_bars(bars)
    bar_pos = pd.Index(b["session"]).get_indexer(dates)
    has_bar = bar_pos >= 0
    under = q.groupby("date")["underlying_close"].first().reindex(dates).to_numpy(float)
    spot = np.where(has_bar, b["close"].to_numpy(float)[np.maximum(bar_pos, 0)] if len(b) else np.nan, under)
    bar_known = np.full(len(dates), np.datetime64("NaT"), dtype="datetime64[us]")
    if len(b):
        cum_known = np.maximum.accumulate(b["known"].to_numpy().astype("datetime64[us]"))
        upto = np.searchsorted(b["session"].to_numpy(), dates.values, side="right") - 1
        bar_known = np.where(upto >= 0, cum_known[np.maximum(upto, 0)], np.datetime64("NaT"))

    r = _normal_rates(rates)
    rate, rate_known = _asof(dates, r, "date", "rate", "known")
    dy, div_known = dividend_yield(dates, factor_rows)

    ev = _events(factor_rows)
    splits = ev[np.abs(np.log(ev["split_ratio"].astype(float))) > np.log(SPLIT_MIN_RATIO)] if len(ev) else ev
    split_known = np.full(len(dates), np.datetime64("NaT"), dtype="datetime64[us]")
    for ev_row in splits.itertuples():
        used = dates.values >= np.datetime64(ev_row.ex_date)
        split_known = np.where(used, np.fmax(split_known, np.datetime64(ev_row.known, "us")), split_known)

    known = chain_known.astype("datetime64[us]")
    for extra in (bar_known, rate_known, div_known, split_known):
        known = np.fmax(known, extra)
    days = pd.DataFrame({"date": dates, "spot": spot, "spot_from_chain": ~has_bar, "rate": rate, "q": dy,
                         "stale": stale_day, "known": known})

    d_idx = pd.Index(dates).get_indexer(q["date"])
    q["spot"] = spot[d_idx]
    q["rate"] = rate[d_idx]
    q["q"] = dy[d_idx]
    q["days"] = (q["expiry"] - q["date"]).dt.days.astype(float)
    q["T"] = q["days"] / 365.0
    bid, ask, close = q["bid"].to_numpy(), q["ask"].to_numpy(), q["close"].to_numpy()
    mid_ok = (bid > 0) & (ask > 0) & (ask >= bid)
    trade_ok = ~mid_ok & (close > 0)
    q["price"] = np.where(mid_ok, 0.5 * (bid + ask), np.where(trade_ok, close, np.nan))
    q["price_source"] = np.where(mid_ok, "mid", np.where(trade_ok, "close", ""))
    q["in_scale"] = ~_old_scale_rows(q, splits) & (q["T"] > 0)
    q["stale"] = stale_day[d_idx]
    is_call = (q["right"] == "C").to_numpy()
    solve = q["in_scale"].to_numpy() & ~q["stale"].to_numpy() & np.isfinite(q["price"].to_numpy())
    iv = np.full(len(q), np.nan)
    j = np.flatnonzero(solve)
    if j.size:
        iv[j] = implied_vol(q["price"].to_numpy()[j], q["spot"].to_numpy()[j], q["strike"].to_numpy(float)[j],
                            q["T"].to_numpy()[j], q["rate"].to_numpy()[j], q["q"].to_numpy()[j], is_call[j])
    q["iv"] = iv
    delta = np.full(len(q), np.nan)
    j = np.flatnonzero(np.isfinite(iv))
    if j.size:
        delta[j] = model_delta(q["spot"].to_numpy()[j], q["strike"].to_numpy(float)[j], q["T"].to_numpy()[j],
                               q["rate"].to_numpy()[j], q["q"].to_numpy()[j], iv[j], is_call[j])
    q["delta"] = delta
    vend = q["implied_volatility"].to_numpy(float)
    q["vendor_iv"] = np.where(vend >= 1e-4, vend, np.nan)
    return q.drop(columns=["_known"]), days


# ------------------------------------------------------------------ per expiry and date

def _atm_iv(strikes: np.ndarray, ivs: np.ndarray, fwd: float) -> float:
    """Median IV of the calls and puts at the ATM_STRIKES listed strikes on each side
    of the forward (within ATM_BAND of it); needs a strike on both sides. The
    median shrugs off stale last-trade prints; the symmetric choice of strikes
    keeps the smile's slope from biasing it."""
    ok = np.isfinite(ivs)
    k, v = strikes[ok], ivs[ok]
    uniq = np.unique(k[np.abs(np.log(k / fwd)) <= ATM_BAND])
    below, above = uniq[uniq <= fwd][-ATM_STRIKES:], uniq[uniq > fwd][:ATM_STRIKES]
    if below.size == 0 or above.size == 0:
        return np.nan
    return float(np.median(v[np.isin(k, np.concatenate([below, above]))]))


def _wing_iv(deltas: np.ndarray, ivs: np.ndarray, target: float) -> float:
    """Median IV of the contracts whose delta lies within WING_BAND of ``target``,
    with at least one on each side of it."""
    ok = np.isfinite(deltas) & np.isfinite(ivs) & (np.abs(deltas - target) <= WING_BAND)
    d, v = deltas[ok], ivs[ok]
    if not ((d <= target).any() and (d >= target).any()):
        return np.nan
    return float(np.median(v))


def constant_maturity(days: np.ndarray, ivs: np.ndarray, target: float) -> float:
    """Linear interpolation in total variance (sigma^2 T) between the nearest
    expiries on either side of ``target`` days; never extrapolated."""
    ok = np.isfinite(ivs)
    d, v = np.asarray(days, float)[ok], np.asarray(ivs, float)[ok]
    if (d == target).any():
        return float(v[d == target][0])
    below, above = d < target, d > target
    if not below.any() or not above.any():
        return np.nan
    i0 = np.flatnonzero(below)[np.argmax(d[below])]
    i1 = np.flatnonzero(above)[np.argmin(d[above])]
    t0, t1 = d[i0], d[i1]
    w0, w1 = v[i0] ** 2 * t0, v[i1] ** 2 * t1
    w = w0 + (w1 - w0) * (target - t0) / (t1 - t0)
    return float(np.sqrt(w / target)) if w > 0 else np.nan


def term_structure(contracts: pd.DataFrame, iv_col: str = "iv") -> pd.DataFrame:
    """Per chain date and expiry (>= 7 days): days, forward, ATM IV, and the 25-delta put and call IVs."""
    rows = []
    c = contracts[contracts["in_scale"] & ~contracts["stale"] & (contracts["days"] >= MIN_EXPIRY_DAYS)]
    for (d, e), g in c.groupby(["date", "expiry"], sort=True):
        T = float(g["T"].iloc[0])
        S, r, q = float(g["spot"].iloc[0]), float(g["rate"].iloc[0]), float(g["q"].iloc[0])
        fwd = S * np.exp((r - q) * T)
        k = g["strike"].to_numpy(float)
        is_call = (g["right"] == "C").to_numpy()
        v = g[iv_col].to_numpy(float)
        atm = _atm_iv(k, v, fwd) if np.isfinite(fwd) else np.nan
        put25 = call25 = np.nan
        if iv_col == "iv":
            dl = g["delta"].to_numpy(float)
            otm_p, otm_c = ~is_call & (k < fwd), is_call & (k > fwd)
            put25 = _wing_iv(dl[otm_p], v[otm_p], -0.25)
            call25 = _wing_iv(dl[otm_c], v[otm_c], 0.25)
        rows.append((d, e, float(g["days"].iloc[0]), fwd, atm, put25, call25))
    return pd.DataFrame(rows, columns=["date", "expiry", "days", "forward", "atm_iv", "put25_iv", "call25_iv"])


# ------------------------------------------------------------------ the family compute

def _empty_output() -> pd.DataFrame:
    frame = pd.DataFrame({"symbol": pd.Series(dtype=object),
                          "event_timestamp": pd.Series(dtype="datetime64[us, UTC]"),
                          "known_timestamp": pd.Series(dtype="datetime64[us, UTC]")})
    for o in OUTPUTS:
        frame[o.name] = pd.Series(dtype=o.dtype)
    return frame


def compute_options(quotes: pd.DataFrame, bars: pd.DataFrame, rates: pd.DataFrame, factor_rows: pd.DataFrame | None = None,
                    *, rank_window: int = RANK_WINDOW, rank_min_periods: int = RANK_MIN_PERIODS,
                    min_contracts: int = MIN_CONTRACTS, calendar: str = "XNYS") -> pd.DataFrame:
    """Every options output for ONE underlying, one row per chain date.

    ``quotes``: silver ``option_quotes`` rows; ``bars``: the underlying's daily
    bars (``session``, ``open``..``close``, ``event_timestamp``; may be empty);
    ``rates``: ``date``, ``rate`` (decimal) and optionally ``event_timestamp``;
    ``factor_rows``: the underlying's ``corporate_actions`` rows or None.
    See the module docstring for every definition."""
    if quotes is None or len(quotes) == 0:
        return _empty_output()
    contracts, days = chain_ivs(quotes, bars, rates, factor_rows)
    dates = pd.DatetimeIndex(days["date"])
    n = len(dates)
    symbol = str(quotes["underlying"].iloc[0]) if "underlying" in quotes else ""

    # per-date counts and flow
    usable = np.isfinite(contracts["iv"].to_numpy())
    d_idx = pd.Index(dates).get_indexer(contracts["date"])
    n_contracts = np.bincount(d_idx[usable], minlength=n).astype(np.int64)
    closes = np.bincount(d_idx[usable & (contracts["price_source"] == "close").to_numpy()], minlength=n)
    close_share = np.where(n_contracts > 0, closes / np.maximum(n_contracts, 1), np.nan)
    live = contracts[contracts["in_scale"] & ~contracts["stale"]]
    flow = live.assign(put=live["right"] == "P").groupby(["date", "put"])[["volume", "open_interest"]].sum(min_count=1)

    def ratio(col: str) -> np.ndarray:
        if flow.empty:
            return np.full(n, np.nan)
        t = flow[col].unstack("put").reindex(dates)
        puts = t[True].to_numpy(float) if True in t else np.full(n, np.nan)
        calls = t[False].to_numpy(float) if False in t else np.full(n, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(calls > 0, puts / calls, np.nan)

    # term structure
    ts = term_structure(contracts, "iv")
    vts = term_structure(contracts, "vendor_iv")
    out = {name: np.full(n, np.nan) for name in output_columns()}
    thin_side = np.ones(n, bool)
    for i, d in enumerate(dates):
        g = ts[ts["date"] == d]
        if len(g):
            dd = g["days"].to_numpy()
            out["iv_atm_30d"][i] = constant_maturity(dd, g["atm_iv"].to_numpy(), 30)
            out["iv_atm_60d"][i] = constant_maturity(dd, g["atm_iv"].to_numpy(), 60)
            p25 = constant_maturity(dd, g["put25_iv"].to_numpy(), 30)
            c25 = constant_maturity(dd, g["call25_iv"].to_numpy(), 30)
            out["iv_skew_25d"][i] = p25 - c25
            ok = np.isfinite(g["atm_iv"].to_numpy())
            thin_side[i] = not ((dd[ok] <= 30).any() and (dd[ok] >= 30).any())
        vg = vts[vts["date"] == d]
        if len(vg):
            out["iv_vendor_atm_30d"][i] = constant_maturity(vg["days"].to_numpy(), vg["atm_iv"].to_numpy(), 30)
    out["iv_term_slope"] = out["iv_atm_60d"] - out["iv_atm_30d"]

    # greeks of the synthetic 30-day ATM call
    T30 = 30.0 / 365.0
    S, r, q = days["spot"].to_numpy(float), days["rate"].to_numpy(float), days["q"].to_numpy(float)
    sig = out["iv_atm_30d"]
    ok = np.isfinite(sig) & np.isfinite(S) & np.isfinite(r)
    if ok.any():
        fwd = S[ok] * np.exp((r[ok] - q[ok]) * T30)
        gk = greeks(S[ok], fwd, T30, r[ok], q[ok], sig[ok], True)
        for name in ("delta", "gamma", "vega", "theta"):
            out[f"atm_call_{name}_30d"][ok] = gk[name]

    # realised volatility from the adjusted bars, read at each chain date
    b = _prepare_bars(bars)
    if len(b):
        split, price = cumulative_factors(b["session"], factor_rows)
        adj = {c: b[c].to_numpy(float) * split * price for c in ("open", "high", "low", "close")}
        rv = {"rv_cc_21": rv_close_to_close(adj["close"]), "rv_parkinson_21": rv_parkinson(adj["high"], adj["low"]),
              "rv_yz_21": rv_yang_zhang(adj["open"], adj["high"], adj["low"], adj["close"])}
        pos = pd.Index(b["session"]).get_indexer(dates)
        for name, values in rv.items():
            out[name] = np.where(pos >= 0, values[np.maximum(pos, 0)], np.nan)
    out["iv_rv_spread"] = out["iv_atm_30d"] - out["rv_cc_21"]

    rank, pct = iv_rank_percentile(dates, out["iv_atm_30d"], window=rank_window, min_periods=rank_min_periods, calendar=calendar)
    out["iv_rank_252"], out["iv_pct_252"] = rank, pct
    out["pc_volume_ratio"] = ratio("volume")
    out["pc_oi_ratio"] = ratio("open_interest")

    known = pd.Series(days["known"].to_numpy()).cummax()          # IV rank uses every earlier row
    event = pd.to_datetime(known).dt.tz_localize("UTC").astype("datetime64[us, UTC]")
    frame = pd.DataFrame({"symbol": [symbol] * n, "event_timestamp": event, "known_timestamp": event})
    for o in OUTPUTS:
        if o.name == "n_contracts":
            frame[o.name] = n_contracts
        elif o.name == "chain_thin":
            frame[o.name] = (n_contracts < min_contracts) | thin_side | days["stale"].to_numpy(bool)
        elif o.name == "chain_stale":
            frame[o.name] = days["stale"].to_numpy(bool)
        elif o.name == "spot_from_chain":
            frame[o.name] = days["spot_from_chain"].to_numpy(bool)
        elif o.name == "close_price_share":
            frame[o.name] = close_share.astype(float)
        else:
            frame[o.name] = out[o.name].astype(float)
    return frame


# ------------------------------------------------------------------ the one adapter (I/O)

def rates_from_lean(frame: pd.DataFrame) -> pd.DataFrame:
    """Lean's ``interest_rate_usa/interest-rate.csv`` (``DATE``, ``PCREDIT8`` in
    percent, by effective date) as ``date``, ``rate`` (decimal), ``event_timestamp``
    (the effective date's start in New York)."""
    d = pd.to_datetime(frame["DATE"]).dt.normalize()
    return pd.DataFrame({
        "date": d.astype("datetime64[us]"),
        "rate": pd.to_numeric(frame["PCREDIT8"], errors="coerce").astype(float) / 100.0,
        "event_timestamp": d.dt.tz_localize(NEW_YORK).dt.tz_convert("UTC").astype("datetime64[us, UTC]"),
    })
