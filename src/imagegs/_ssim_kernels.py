"""Numba kernels of the fitting loss l1 * mean|x - y| + w * (1 - SSIM(x, y)) and its gradient.

SSIM is exactly ``metrics.ssim``: 11-tap Gaussian window (sigma 1.5) applied separably with zero
padding ('same'), C1 = 0.01^2, C2 = 0.03^2, mean over channels and pixels. Design notes:
- The three maps a pass blurs ([x, x*x, x*y] forward, the partials [d1, d2, d3] backward) are
  stored interleaved, as (rows, 3 W) arrays with five zero rows above and below the image, so one
  routine (``_blur_rows``) blurs all three at once with no border cases: the vertical taps read
  padded rows r..r+10, the horizontal taps (3 apart) read a row buffer with zero ends. Both
  accumulate in registers over a fixed 11-tap loop that LLVM unrolls and vectorises along the row;
  the vertical pass makes two rows at a time, sharing their loads.
- Inner loops store to as few arrays as possible (one, or two): without restrict, LLVM needs a
  runtime alias check per pair of arrays and gives up vectorising beyond a few. error_model="numpy"
  drops the ZeroDivisionError branch that would otherwise keep divisions scalar.
- Target-only statistics (mu_y, var_y) are computed once (``target_stats``).
- ``loss_grad`` gives the loss terms and, in the same call, the gradient, in two passes over
  (channel, block of rows) tasks, each on all threads (``run_workers``). Pass 1 builds the
  block's [x, x*x, x*y] rows (plus a 5-row halo) in task-local scratch, blurs them and writes
  the per-pixel partials d1, d2, d3 = dS/dmu_x, dS/dE[x^2], dS/dE[xy] (pre-scaled by
  -ssim_weight / M) to a shared padded buffer. Pass 2 blurs
  them (the zero-padded symmetric blur is self-adjoint):
  grad = blur(d1) + 2 x blur(d2) + y blur(d3) + l1_weight pw sign(x - y) / M, where the partials
  carry the per-pixel weights pw (all ones unless the loss is weighted).
fastmath excludes nnan/ninf so NaN/inf inputs propagate as in torch.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit

from ._workers import run_workers

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
C1, C2 = 0.01**2, 0.03**2
TAPS = 11  # window size (fixed: a compile-time trip count lets LLVM unroll and vectorise the taps)
PAD = TAPS // 2
NMAP = 3  # maps blurred together, interleaved
ROWS_PER_TASK = 16  # rows per parallel task: amortises its scratch rows, small enough to balance


def window(sigma: float = 1.5) -> np.ndarray:
    """The normalised TAPS-point Gaussian (float64): ``metrics.gaussian_window`` as an array."""
    import torch  # here: the kernels import without torch (compiling them in a child: imagegs._jit)

    from .metrics import gaussian_window

    return gaussian_window(TAPS, sigma, torch.float64).numpy()


def scratch(channels: int, height: int, width: int, dtype) -> np.ndarray:
    """A zeroed (C, H + 2 PAD + 1, NMAP W) buffer of interleaved maps with zero border rows.

    ``loss_grad`` only writes the inner rows, so the border rows stay zero across reuse; the extra
    bottom row lets ``_blur_rows`` compute a (discarded) row past the end.
    """
    return np.zeros((channels, height + 2 * PAD + 1, NMAP * width), dtype)


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _blur_rows(src, r, w, vbuf, out):
    """Rows r and r + 1 of the blurred interleaved maps ``src`` (padded as ``scratch``) into out.

    vbuf: (2, NMAP (W + 2 PAD)) scratch whose first and last NMAP PAD columns are zero;
    out: (2, NMAP W). Two rows at a time share the vertical taps' loads.
    """
    n = out.shape[1]
    v0 = vbuf[0, NMAP * PAD:NMAP * PAD + n]
    v1 = vbuf[1, NMAP * PAD:NMAP * PAD + n]
    for q in range(n):  # vertical: rows r..r+10 and r+1..r+11 of the padded maps
        acc0 = w[0] * src[r, q]
        acc1 = w[0] * src[r + 1, q]
        for t in range(1, TAPS):
            acc0 += w[t] * src[r + t, q]
            acc1 += w[t] * src[r + 1 + t, q]
        v0[q] = acc0
        v1[q] = acc1
    for k in range(2):  # horizontal: taps NMAP apart, the zero ends of vbuf are the border
        vk, ok = vbuf[k], out[k]
        for q in range(n):
            acc = w[0] * vk[q]
            for t in range(1, TAPS):
                acc += w[t] * vk[q + NMAP * t]
            ok[q] = acc


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _product_block(a, b, i0, i1, dst):
    """dst <- interleaved [a, a*a, a*b] of rows i0 - PAD ..= i1 + PAD of (H, W) images a, b.

    Rows outside the image are zero, so ``_blur_rows(dst, i - i0, ...)`` gives output row i.
    """
    h = a.shape[0]
    for k in range(dst.shape[0]):
        i, row = i0 - PAD + k, dst[k]
        if i < 0 or i >= h:
            row[:] = 0
            continue
        ar, br = a[i], b[i]
        for j in range(ar.shape[0]):
            row[NMAP * j] = ar[j]
            row[NMAP * j + 1] = ar[j] * ar[j]
            row[NMAP * j + 2] = ar[j] * br[j]


def target_stats(y, w):
    """(mu_y, var_y) of a (C, H, W) target: its blur and blur(y*y) - mu_y^2."""
    mu = np.empty_like(y)
    var = np.empty_like(y)
    run_workers(_target_stats_worker, numba.get_num_threads(), y, w, mu, var)
    return mu, var


@njit(nogil=True, fastmath=FASTMATH, error_model="numpy", cache=True)
def _target_stats_worker(wk, nworkers, y, w, mu, var):
    """Worker ``wk`` of ``target_stats``: tasks (channel, block of rows) wk, wk + nworkers, ..."""
    nc, h, wd = y.shape
    nb = (h + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in range(wk, nc * nb, nworkers):
        ch, i0 = task // nb, (task % nb) * ROWS_PER_TASK
        i1 = min(h, i0 + ROWS_PER_TASK)
        prod = np.empty((i1 - i0 + 2 * PAD + 1, NMAP * wd), y.dtype)
        _product_block(y[ch], y[ch], i0, i1, prod)
        vbuf = np.zeros((2, NMAP * (wd + 2 * PAD)), y.dtype)
        out = np.empty((2, NMAP * wd), y.dtype)
        for i2 in range(i0, i1, 2):
            _blur_rows(prod, i2 - i0, w, vbuf, out)
            for i in range(i2, min(i2 + 2, i1)):
                b, m, v = out[i - i2], mu[ch, i], var[ch, i]
                for j in range(wd):
                    m[j] = b[NMAP * j]
                for j in range(wd):
                    v[j] = b[NMAP * j + 1] - b[NMAP * j] * b[NMAP * j]


def loss_grad(x, y, mu_y, var_y, w, pw, l1_scale, ssim_scale, need_grad, grad, part):
    """Weighted sums of |x - y| and of the SSIM map of (C, H, W) images, and optionally the loss
    gradient.

    mu_y, var_y: from ``target_stats``; w: ``window()`` in x.dtype; pw: (C, H, W) per-pixel weights
    in x.dtype (ones: the plain sums); part: a ``scratch`` buffer (it receives the partials). With
    ``need_grad``, writes into ``grad`` the gradient of l1_scale * sum pw |x - y| + ssim_scale *
    sum(pw SSIM map); ``ssim_scale == 0`` skips the SSIM work (its sum is then 0). Returns
    (sum pw |x - y|, sum pw SSIM) in float64. Both passes run on ``numba.get_num_threads()``
    threads, each on the tasks (channel, block of rows) wk, wk + threads, ...
    """
    nc, h, _ = x.shape
    nb = (h + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    sum_abs = np.zeros(nc * nb)
    sum_ssim = np.zeros(nc * nb)
    threads = numba.get_num_threads()
    l1_scale, ssim_scale = float(l1_scale), float(ssim_scale)
    run_workers(_loss_pass1, threads, x, y, mu_y, var_y, w, pw, ssim_scale, part, sum_abs, sum_ssim)
    if need_grad:
        run_workers(_loss_pass2, threads, x, y, w, pw, l1_scale, ssim_scale, grad, part)
    return _ordered_sum(sum_abs), _ordered_sum(sum_ssim)


@njit(cache=True)
def _ordered_sum(a):
    """The sum of a float64 vector, added left to right (as the parallel kernel did)."""
    t = 0.0
    for v in a:
        t += v
    return t


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _constants(x, l1_scale, ssim_scale):
    """(1, C1, C2, l1_scale, ssim_scale) in x.dtype: float32 maths stays in float32."""
    cst = np.empty(5, x.dtype)
    cst[0], cst[1], cst[2], cst[3], cst[4] = 1.0, C1, C2, l1_scale, ssim_scale
    return cst[0], cst[1], cst[2], cst[3], cst[4]


@njit(nogil=True, fastmath=FASTMATH, error_model="numpy", cache=True)
def _loss_pass1(wk, nworkers, x, y, mu_y, var_y, w, pw, ssim_scale, part, sum_abs, sum_ssim):
    """Pass 1 of ``loss_grad``, worker ``wk``: the SSIM map and its per-pixel partials."""
    nc, h, wd = x.shape
    one, c1, c2, l1s, ss = _constants(x, 0.0, ssim_scale)
    two = one + one
    do_ssim = ssim_scale != 0
    nb = (h + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in range(wk, nc * nb, nworkers):
        ch, i0 = task // nb, (task % nb) * ROWS_PER_TASK
        i1 = min(h, i0 + ROWS_PER_TASK)
        acc_abs = 0.0
        for i in range(i0, i1):
            xr, yr, pr = x[ch, i], y[ch, i], pw[ch, i]
            for j in range(wd):
                acc_abs += pr[j] * abs(xr[j] - yr[j])
        sum_abs[task] = acc_abs
        if not do_ssim:
            continue
        prod = np.empty((i1 - i0 + 2 * PAD + 1, NMAP * wd), x.dtype)
        _product_block(x[ch], y[ch], i0, i1, prod)
        vbuf = np.zeros((2, NMAP * (wd + 2 * PAD)), x.dtype)
        out = np.empty((2, NMAP * wd), x.dtype)
        acc_ssim = 0.0
        for i2 in range(i0, i1, 2):
            _blur_rows(prod, i2 - i0, w, vbuf, out)
            for i in range(i2, min(i2 + 2, i1)):
                b, myr, vyr, d, pr = out[i - i2], mu_y[ch, i], var_y[ch, i], part[ch, PAD + i], pw[ch, i]
                for j in range(wd):
                    mx, my = b[NMAP * j], myr[j]
                    a1 = two * mx * my + c1
                    a2 = two * (b[NMAP * j + 2] - mx * my) + c2
                    inv_b1 = one / (mx * mx + my * my + c1)
                    inv_b2 = one / (b[NMAP * j + 1] - mx * mx + vyr[j] + c2)
                    s = a1 * a2 * inv_b1 * inv_b2
                    acc_ssim += pr[j] * s
                    sp = ss * pr[j]
                    d[NMAP * j] = sp * two * (my * (a2 - a1) * inv_b1 * inv_b2 + mx * s * (inv_b2 - inv_b1))
                    d[NMAP * j + 1] = -sp * s * inv_b2
                    d[NMAP * j + 2] = sp * two * a1 * inv_b1 * inv_b2
        sum_ssim[task] = acc_ssim


@njit(nogil=True, fastmath=FASTMATH, error_model="numpy", cache=True)
def _loss_pass2(wk, nworkers, x, y, w, pw, l1_scale, ssim_scale, grad, part):
    """Pass 2 of ``loss_grad``, worker ``wk``: blur the partials, chain rule back to x, plus L1."""
    nc, h, wd = x.shape
    one, c1, c2, l1s, ss = _constants(x, l1_scale, 0.0)
    two, zero = one + one, one - one
    do_ssim = ssim_scale != 0
    nb = (h + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in range(wk, nc * nb, nworkers):
        ch, i0 = task // nb, (task % nb) * ROWS_PER_TASK
        i1 = min(h, i0 + ROWS_PER_TASK)
        vbuf = np.zeros((2, NMAP * (wd + 2 * PAD)), x.dtype)
        out = np.zeros((2, NMAP * wd), x.dtype)  # stays zero for an L1-only loss
        for i2 in range(i0, i1, 2):
            if do_ssim:
                _blur_rows(part[ch], i2, w, vbuf, out)  # part row PAD + i is centred on row i
            for i in range(i2, min(i2 + 2, i1)):
                b, xr, yr, gr, pr = out[i - i2], x[ch, i], y[ch, i], grad[ch, i], pw[ch, i]
                for j in range(wd):
                    e = xr[j] - yr[j]
                    sgn = pr[j] * l1s if e > zero else (-pr[j] * l1s if e < zero else zero)
                    gr[j] = b[NMAP * j] + two * xr[j] * b[NMAP * j + 1] + yr[j] * b[NMAP * j + 2] + sgn
