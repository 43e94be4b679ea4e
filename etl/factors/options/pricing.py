"""Option pricing kernels: numpy in, numpy out, every contract of every chain at once.

Bjerksund-Stensland (2002) American prices, Black-Scholes-Merton European
prices, implied volatility by safeguarded Newton, greeks by central
differences. The model and its checks: docs/factors.md (Options).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import log_ndtr, ndtr

from etl.core.errors import FactorInputError

VOL_LO, VOL_HI = 1e-3, 5.0
SQRT5_T1 = 0.5 * (math.sqrt(5.0) - 1.0)  # t1 / T in Bjerksund-Stensland 2002

_GL_X, _GL_W = np.polynomial.legendre.leggauss(20)


def bivariate_normal_cdf(a, b, rho) -> np.ndarray:
    """P(X < a, Y < b) for standard normals with correlation ``rho`` (|rho| < 0.925),
    elementwise: Genz's Gauss-Legendre form of the Drezner-Wesolowsky integral."""
    a, b, rho = np.broadcast_arrays(np.asarray(a, float), np.asarray(b, float), np.asarray(rho, float))
    if np.any(np.abs(rho) >= 0.925):
        raise FactorInputError("options: bivariate_normal_cdf handles |rho| < 0.925 only")
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
