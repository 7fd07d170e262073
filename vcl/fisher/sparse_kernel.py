"""Compiled kernels of the CPU Fisher vector encoder (numba): sparse-posterior statistics.

For a block of rows with log-densities l_nk = log w_k N(x_n | k) (one float32 matmul, in
:mod:`vcl.fisher.encode`), the statistics are Σ_n γ_nk [u_nk, u_nk², 1] with
u_nk = x_n − μ_k. A row's posteriors are all but a handful negligible (at K = 256,
D = 64: 6.8 components on average within 30 of the row's largest log-density): only
those with l_nk ≥ max_j l_nj − ``floor`` are kept (relative posterior ≥ e^-30 ≈ 9e-14
at the default floor: what is dropped changes no statistic by more than ~1e-13 of its
value, far below float32 precision). This is the posterior thresholding of Sánchez et
al. (IJCV 2013) and of VLFeat's ``vl_fisher``, with a threshold small enough that the
result equals the dense one to float32 rounding.

Steps for a block (:func:`sparse_statistics`):

1. per row, the maximum (16-wide vector max, :func:`_max16`), then per 16 components
   one vector compare whose survivors are appended to flat lists by masked compress
   stores (:func:`_keep16`: no branch; walking the mask's bits mispredicted on fresh
   data and cost ~2 ms more over 61k rows);
2. exp of the survivors' l − max, vectorised (:func:`_exp_nonpositive`), normalised per
   row;
3. a counting sort of the survivors by component, then each component's rows summed in
   16-wide float32 registers (:func:`_sum_run`), centred on the component's mean, and
   added once to the float64 statistics. Summing into the (K, 2D + 1) statistics row
   by row went through memory (store-to-load waits, L2 traffic for statistics that do
   not fit L1).

The float32 sums within a block are what the dense path's float32 matmul computes too;
centring on each component's mean makes them more accurate than the dense path's
(centred on the mixture's mean) where components are narrow and far from it.
:func:`gradients` then forms the Fisher vectors in one fused pass per video.

LLVM's auto-vectoriser does not handle the max, the compaction or the register-resident
sums, so they are written as small LLVM IR intrinsics (16 float32 lanes: one AVX-512
register; LLVM splits them into two AVX2 ones on CPUs without AVX-512).

Compiled on first use (~5 s of CPU, once) and cached on disk (``cache=True``: in
``__pycache__`` beside this file, or numba's user cache directory where that cannot be
written, as in a read-only install). ``nogil`` lets the row-range threads of
:func:`vcl.fisher.gmm.map_row_ranges` run the kernels in parallel.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}
_VEC = ir.VectorType(ir.FloatType(), 16)


def _load16(context, builder, arrty, array, offset):
    """<16 x float> at flat[offset:offset + 16] of a contiguous float32 array."""
    ary = context.make_array(arrty)(context, builder, array)
    ptr = builder.bitcast(builder.gep(ary.data, [offset]), _VEC.as_pointer())
    return builder.load(ptr, align=4)


def _vmax(builder, a, b):
    """Lane-wise a > b ? a : b, which is one ``vmaxps`` (``llvm.maxnum`` is not: it
    adds NaN fix-ups); NaN in b is kept."""
    return builder.select(builder.fcmp_ordered(">", a, b), a, b)


@intrinsic
def _keep16(typingctx, flat, offset, cut, top, c0, i, comp, rows, gamma, s):
    """Of the 16 log-densities flat[offset:] (components c0 … c0 + 15 of block row i),
    append those ≥ cut to the survivors' lists at s: their components to comp, i to
    rows, their log-density − top to gamma; returns how many. Three masked compress
    stores and a popcount, no branch (a loop over the mask's set bits mispredicts its
    exits on fresh data: ~2 ms more over the benchmark's 61k rows)."""
    sig = types.uint64(flat, offset, cut, top, c0, i, comp, rows, gamma, s)

    def codegen(context, builder, signature, args):
        flat, offset, cut, top, c0, i, comp, rows, gamma, s = args
        i32, i64 = ir.IntType(32), ir.IntType(64)
        vec_i = ir.VectorType(i32, 16)
        mask_t = ir.VectorType(ir.IntType(1), 16)
        values = _load16(context, builder, signature.args[0], flat, offset)
        keep = builder.fcmp_ordered(">=", values, _splat(builder, cut))
        iota = ir.Constant(vec_i, list(range(16)))
        comps = builder.add(_splat(builder, builder.trunc(_int64(builder, c0), i32)), iota)
        here = _splat(builder, builder.trunc(_int64(builder, i), i32))
        shifted = builder.fsub(values, _splat(builder, top))
        s = _int64(builder, s)
        for array, array_t, value in (
            (comp, signature.args[6], comps),
            (rows, signature.args[7], here),
            (gamma, signature.args[8], shifted),
        ):
            data = context.make_array(array_t)(context, builder, array).data
            name = "llvm.masked.compressstore.v16" + ("f32" if value.type == _VEC else "i32")
            store = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(ir.VoidType(), [value.type, data.type, mask_t]),
                name,
            )
            builder.call(store, [value, builder.gep(data, [s]), keep])
        ctpop = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(16), [ir.IntType(16)]), "llvm.ctpop.i16"
        )
        return builder.zext(builder.call(ctpop, [builder.bitcast(keep, ir.IntType(16))]), i64)

    return sig, codegen


def _splat(builder, scalar):
    """<16 x scalar's type> with every lane = scalar."""
    vec = ir.VectorType(scalar.type, 16)
    undef = ir.Constant(vec, ir.Undefined)
    lane0 = builder.insert_element(undef, scalar, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(
        lane0, undef, ir.Constant(ir.VectorType(ir.IntType(32), 16), [0] * 16)
    )


@intrinsic
def _max16(typingctx, flat, offset, chunks):
    """max(flat[offset : offset + 16 chunks]), chunks ≥ 1, of a contiguous float32 array:
    a running 16-wide max, then a shuffle tree (LLVM does not vectorise a scalar float
    max loop without a no-NaN function attribute)."""
    sig = types.float32(flat, offset, chunks)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        offset, n = _int64(builder, args[1]), _int64(builder, args[2])
        first = _load16(context, builder, signature.args[0], args[0], offset)
        entry, head, body, done = _loop_blocks(builder, "max16")
        j = builder.phi(i64)
        acc = builder.phi(_VEC)
        j.add_incoming(ir.Constant(i64, 1), entry)
        acc.add_incoming(first, entry)
        builder.cbranch(builder.icmp_signed("<", j, n), body, done)
        builder.position_at_end(body)
        at = builder.add(offset, builder.mul(j, ir.Constant(i64, 16)))
        values = _load16(context, builder, signature.args[0], args[0], at)
        j.add_incoming(builder.add(j, ir.Constant(i64, 1)), body)
        acc.add_incoming(_vmax(builder, values, acc), body)
        builder.branch(head)
        builder.position_at_end(done)
        undef = ir.Constant(_VEC, ir.Undefined)
        width = 16
        while width > 1:  # fold the upper half onto the lower: 16 → 8 → 4 → 2 → 1
            width //= 2
            mask = [width + lane if lane < width else lane for lane in range(16)]
            upper = builder.shuffle_vector(
                acc, undef, ir.Constant(ir.VectorType(ir.IntType(32), 16), mask)
            )
            acc = _vmax(builder, upper, acc)
        return builder.extract_element(acc, ir.Constant(ir.IntType(32), 0))

    return sig, codegen


def _int64(builder, value):
    i64 = ir.IntType(64)
    return builder.sext(value, i64) if value.type.width < 64 else value


def _loop_blocks(builder, name):
    """``(entry, head, body, done)``: the blocks of a loop, the builder moved from the
    current block (entry) into head, where the caller adds its phis and the branch."""
    entry = builder.block
    head = builder.append_basic_block(f"{name}.head")
    body = builder.append_basic_block(f"{name}.body")
    done = builder.append_basic_block(f"{name}.done")
    builder.branch(head)
    builder.position_at_end(head)
    return entry, head, body, done


def _counted_loop(builder, n, body, name):
    """Emit ``for j in range(n): body(j)`` (j an i64 value) at the builder's position."""
    i64 = ir.IntType(64)
    entry, head, loop, done = _loop_blocks(builder, name)
    j = builder.phi(i64)
    j.add_incoming(ir.Constant(i64, 0), entry)
    builder.cbranch(builder.icmp_signed("<", j, n), loop, done)
    builder.position_at_end(loop)
    body(j)
    j.add_incoming(builder.add(j, ir.Constant(i64, 1)), builder.block)
    builder.branch(head)
    builder.position_at_end(done)


def _store16(context, builder, arrty, array, offset, value):
    ary = context.make_array(arrty)(context, builder, array)
    ptr = builder.bitcast(builder.gep(ary.data, [offset]), _VEC.as_pointer())
    builder.store(value, ptr, align=4)


@intrinsic
def _sum_run(typingctx, out, y, order, weights, start, end, stride, mean, m0, d, l0, chunks):
    """One component's run of survivors t in [start, end): rows y[order[t] stride:],
    weights γ = weights[t], u = row − mean[m0:]. For the 16 × chunks dimensions
    l0 ≤ l < l0 + 16 chunks: out[l] = Σ γ u_l and out[d + l] = Σ γ u_l² (stored, not
    added); out[2d] = Σ γ.

    ``chunks`` must be a constant in the caller's code (≤ 4 is meant): the 2 × chunks
    16-wide sums and the mean stay in registers for the whole run, one independent
    add chain per vector (a sum through memory waits ~5 cycles per row on the store).
    """
    if not isinstance(chunks, types.IntegerLiteral):
        return None
    count = chunks.literal_value
    sig = types.void(out, y, order, weights, start, end, stride, mean, m0, d, l0, chunks)

    def codegen(context, builder, signature, args):
        out_t, y_t, order_t, weights_t, mean_t = (signature.args[i] for i in (0, 1, 2, 3, 7))
        out, y, order, weights, start, end, stride, mean, m0, d, l0, _ = args
        i64 = ir.IntType(64)
        f32 = ir.FloatType()
        start, end, stride = (_int64(builder, v) for v in (start, end, stride))
        m0, d, l0 = _int64(builder, m0), _int64(builder, d), _int64(builder, l0)
        order_a = context.make_array(order_t)(context, builder, order)
        weights_a = context.make_array(weights_t)(context, builder, weights)
        sixteen = [builder.add(l0, ir.Constant(i64, 16 * j)) for j in range(count)]
        means = [
            _load16(context, builder, mean_t, mean, builder.add(m0, sixteen[j]))
            for j in range(count)
        ]
        zero = ir.Constant(_VEC, [0.0] * 16)
        undef = ir.Constant(_VEC, ir.Undefined)
        splat = ir.Constant(ir.VectorType(ir.IntType(32), 16), [0] * 16)
        entry, head, body, done = _loop_blocks(builder, "run")
        t = builder.phi(i64)
        total = builder.phi(f32)
        sums = [builder.phi(_VEC) for _ in range(2 * count)]
        t.add_incoming(start, entry)
        total.add_incoming(ir.Constant(f32, 0.0), entry)
        for acc in sums:
            acc.add_incoming(zero, entry)
        builder.cbranch(builder.icmp_signed("<", t, end), body, done)
        builder.position_at_end(body)
        row = builder.zext(builder.load(builder.gep(order_a.data, [t])), i64)
        base = builder.mul(row, stride)
        g = builder.load(builder.gep(weights_a.data, [t]))
        g16 = builder.shuffle_vector(
            builder.insert_element(undef, g, ir.Constant(ir.IntType(32), 0)), undef, splat
        )
        new = [None] * (2 * count)
        for j in range(count):
            value = _load16(context, builder, y_t, y, builder.add(base, sixteen[j]))
            u = builder.fsub(value, means[j])
            gu = builder.fmul(g16, u)
            new[j] = builder.fadd(sums[j], gu)
            new[count + j] = builder.fadd(sums[count + j], builder.fmul(gu, u))
        for acc, value in zip(sums, new, strict=True):
            acc.add_incoming(value, body)
        total.add_incoming(builder.fadd(total, g), body)
        t.add_incoming(builder.add(t, ir.Constant(i64, 1)), body)
        builder.branch(head)
        builder.position_at_end(done)
        for j in range(count):
            _store16(context, builder, out_t, out, sixteen[j], sums[j])
            _store16(context, builder, out_t, out, builder.add(d, sixteen[j]), sums[count + j])
        out_a = context.make_array(out_t)(context, builder, out)
        builder.store(total, builder.gep(out_a.data, [builder.add(d, d)]))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _as_float32(typingctx, bits):
    """The float32 whose bits are the int32 ``bits`` (a bit cast, vectorisable)."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@numba.njit(fastmath={"contract", "arcp"}, **_JIT)
def _exp_nonpositive(x, n):
    """x[:n] ← exp(x[:n]) for float32 x ≤ 0, vectorised (no libm call per element).

    Cephes' expf: x = m ln 2 + r with |r| ≤ ln2/2 (ln 2 split in two for an exact r),
    exp(r) ≈ 1 + r + r² P5(r) (Cephes' minimax coefficients), 2^m written as exponent
    bits; relative error ≤ 1e-7. Below −87 (2^m subnormal): exp(−87).
    """
    for t in range(n):
        v = max(x[t], np.float32(-87.0))
        m = math.floor(v * np.float32(1.44269504088896341) + np.float32(0.5))
        r = v - m * np.float32(0.693359375)
        r = r + m * np.float32(2.12194440e-4)
        p = np.float32(1.9875691500e-4)
        p = p * r + np.float32(1.3981999507e-3)
        p = p * r + np.float32(8.3334519073e-3)
        p = p * r + np.float32(4.1665795894e-2)
        p = p * r + np.float32(1.6666665459e-1)
        p = p * r + np.float32(5.0000001201e-1)
        p = p * r * r + r + np.float32(1.0)
        x[t] = p * _as_float32((np.int32(m) + np.int32(127)) << np.int32(23))  # × 2^m


@numba.njit(inline="always", **_JIT)
def _keep(bits, c0, i, m, lp, base, comp, rows, gamma, s):
    """Append the components c0 + (set bits of ``bits``) of block row i (log-densities
    lp[base:], maximum m) to the survivors' lists; the new count. All uint64."""
    while bits:
        c = c0 + np.uint64(trailing_zeros(bits))
        comp[s] = c
        rows[s] = i
        gamma[s] = lp[base + c] - m
        s += np.uint64(1)
        bits &= bits - np.uint64(1)
    return s


@numba.njit(fastmath={"contract", "arcp"}, **_JIT)
def _statistics(
    logp,
    y,
    means,
    lo,
    hi,
    floor,
    target,
    comp,
    rows,
    order,
    counts,
    gamma,
    sorted_gamma,
    scale,
):
    """The compiled body of :func:`sparse_statistics`.

    Arrays are indexed flat (a row view costs two atomic reference-count updates) with
    unsigned indices (numba wraps negative signed ones, a compare and select per access
    that also keeps LLVM from vectorising).
    """
    u = np.uint64
    one = u(1)
    k, d, stride = u(logp.shape[1]), u((target.shape[1] - 1) // 2), u(y.shape[1])
    width = u(2) * d + one
    k16 = k - k % u(16)
    lp, yf, tg, mf = logp.reshape(-1), y.reshape(-1), target.reshape(-1), means.reshape(-1)
    counts[:] = 0
    s = u(0)
    for i in range(u(lo), u(hi)):
        base = i * k
        m = _max16(lp, base, k16 // u(16)) if k16 else lp[base]
        for j in range(k16, k):
            v = lp[base + j]
            m = v if v > m or v != v else m
        cut = np.float32(m - floor)
        first = s
        for j in range(u(0), k16, u(16)):
            s += _keep16(lp, base + j, cut, m, j, i, comp, rows, gamma, s)
        for j in range(k16, k):
            s = _keep(u(lp[base + j] >= cut), j, i, m, lp, base, comp, rows, gamma, s)
        if s == first:  # NaN row (nothing compares ≥ NaN): all statistics NaN, as dense
            tg[:] = np.nan
    _exp_nonpositive(gamma, s)
    scale[:] = 0.0  # Σ_k exp(log p_nk − max), per block row
    for t in range(s):
        scale[rows[t]] += gamma[t]
        counts[comp[t] + one] += 1
    # counting sort of the survivors by component (stable: rows stay in order), γ normalised
    for c in range(k):
        counts[c + one] += counts[c]
    for t in range(s):
        c = comp[t]
        at = counts[c]
        order[at] = rows[t]
        sorted_gamma[at] = gamma[t] / scale[rows[t]]
        counts[c] = at + one
    # counts[c] is now the end of component c's run and the start of c + 1's. Each run is
    # summed in registers, up to 64 dimensions a pass, the last D mod 16 one by one.
    acc = np.empty(width, np.float32)
    d16 = d - d % u(16)
    start = u(0)
    for c in range(k):
        end = u(counts[c])
        if end == start:
            continue
        m0 = c * d
        l0 = u(0)
        while l0 + u(64) <= d16:  # 4 vectors (64 dimensions) a pass over the run
            _sum_run(acc, yf, order, sorted_gamma, start, end, stride, mf, m0, d, l0, 4)
            l0 += u(64)
        left = (d16 - l0) // u(16)
        if left == 3:
            _sum_run(acc, yf, order, sorted_gamma, start, end, stride, mf, m0, d, l0, 3)
        elif left == 2:
            _sum_run(acc, yf, order, sorted_gamma, start, end, stride, mf, m0, d, l0, 2)
        elif left == 1:
            _sum_run(acc, yf, order, sorted_gamma, start, end, stride, mf, m0, d, l0, 1)
        else:
            _sum_run(acc, yf, order, sorted_gamma, start, end, stride, mf, m0, d, l0, 0)
        for q in range(d16, d):  # the last D mod 16 dimensions, one by one
            s1 = s2 = np.float32(0.0)
            for t in range(start, end):
                uq = yf[u(order[t]) * stride + q] - mf[c * d + q]
                gu = sorted_gamma[t] * uq
                s1 += gu
                s2 += gu * uq
            acc[q], acc[d + q] = s1, s2
        at = c * width
        for q in range(width):
            tg[at + q] += acc[q]
        start = end


def sparse_statistics(
    logp: np.ndarray,
    y: np.ndarray,
    means: np.ndarray,
    lo: int,
    hi: int,
    floor: float,
    target: np.ndarray,
    *work: np.ndarray,
) -> None:
    """target (K, 2D + 1) float64 += Σ_{n ∈ [lo, hi)} γ_nk [u_nk, u_nk², 1] with
    u_nk = y_n − means_k, over the posteriors γ_nk ≥ e^-floor times the row's largest.

    logp (n, K) float32 log w_k N(x_n | k); y (n, ≥ D) float32 the rows x − c, of which
    the first D columns are read; means (K, D) float32 the components' means − c; all
    C-contiguous. The statistics are centred on each component's mean, so the gradients
    need no difference of large terms (S2 − 2μS1 + S0μ² loses ~μ²/σ² of float32's
    precision where the components are narrow and far from the centre); u_nk² is
    formed on the fly, which halves the rows' traffic from L2 against reading
    [y, y², 1]. ``work``: :func:`scratch`. A row with NaN (NaN in the input) keeps no
    component and makes target NaN, as the dense path does.
    """
    _statistics(logp, y, means, lo, hi, floor, target, *work)


@numba.njit(fastmath={"contract"}, **_JIT)
def load_rows(x, centre, z, at):
    """z[at + i, :2D] ← [x_i − c, (x_i − c)²] in float32 for the rows of x (m, D) float32
    or float64 (the difference in x's dtype, as torch's ``sub(x, c, out=z)``), z (n, W ≥
    2D) C-contiguous: one pass where torch takes two (~2× faster)."""
    u = np.uint64
    m, d, w = u(x.shape[0]), u(x.shape[1]), u(z.shape[1])
    xf, zf = x.reshape(-1), z.reshape(-1)
    for i in range(m):
        src = i * d
        dst = (u(at) + i) * w
        for q in range(d):
            zf[dst + q] = np.float32(xf[src + q] - centre[q])
        for q in range(d):
            v = zf[dst + q]
            zf[dst + d + q] = v * v


def scratch(rows: int, k: int) -> tuple[np.ndarray, ...]:
    """Work space of :func:`sparse_statistics` for blocks of up to ``rows`` rows:
    comp, rows (block row index), order (uint32, rows × K: the survivors are at most
    all components of all rows), counts (uint32, K + 1), gamma, sorted_gamma (float32,
    rows × K), scale (float32, rows)."""
    n = rows * k
    ints = np.empty(3 * n + k + 1, np.uint32)
    floats = np.empty(2 * n + rows, np.float32)
    return (
        ints[:n],
        ints[n : 2 * n],
        ints[2 * n : 3 * n],
        ints[3 * n :],
        floats[:n],
        floats[n : 2 * n],
        floats[2 * n :],
    )


@numba.njit(fastmath={"contract", "arcp"}, **_JIT)
def gradients(stats, lengths, weights, mu, variances, a_mu, a_var, skimage, alpha, normalize, out):
    """Fisher vectors from the statistics, fused in two passes over each video's vector
    (the CPU path; the torch formulas of :mod:`vcl.fisher.encode` take about ten passes
    over the (B, dim) float64 output, which does not fit a core's caches).

    stats (B, K, 2D + 1) float64 sums [S1 | S2 | S0] over each video's T_b = lengths[b]
    rows; weights (K,); mu and variances (K, D), the means centred like the rows; a_mu
    and a_var (K, D) the gradients' factors (1/(√w σ) and ±1/(√(2w) σ²), or 1 and −1
    for ``vc``); with ``skimage`` the K weight gradients (S0 − w)/√w come first.
    out (B, dim) float64: G_μ = a_mu (S1 − S0 μ), G_σ = a_var (S2 − 2 μ S1 + S0 (μ² − σ²)),
    then sign(g)|g|^α and L2 normalisation when ``normalize`` (zero vectors stay zero).
    A video with T_b = 0 gets zeros.
    """
    b, k, width = stats.shape
    d = (width - 1) // 2
    first = k if skimage else 0
    for v in range(b):
        row = out[v]
        if lengths[v] == 0:
            row[:] = 0.0
            continue
        inv = 1.0 / lengths[v]
        sv = stats[v]
        g_mu = row[first : first + k * d].reshape(k, d)
        g_var = row[first + k * d :].reshape(k, d)
        for c in range(k):
            s0 = sv[c, 2 * d] * inv
            if skimage:
                row[c] = (s0 - weights[c]) / math.sqrt(weights[c])
            for q in range(d):
                m = mu[c, q]
                s1 = sv[c, q] * inv
                s2 = sv[c, d + q] * inv
                g_mu[c, q] = a_mu[c, q] * (s1 - s0 * m)
                g_var[c, q] = a_var[c, q] * (s2 - 2.0 * m * s1 + s0 * (m * m - variances[c, q]))
        if normalize:
            _power_l2(row, alpha)


@numba.njit(fastmath={"reassoc", "nsz", "contract", "arcp"}, **_JIT)
def _power_l2(row, alpha):
    """row ← sign(g)|g|^α, then divided by its L2 norm unless zero (vectorised: the sum
    may be reassociated)."""
    if alpha == 0.5:
        for j in range(row.shape[0]):
            row[j] = math.copysign(math.sqrt(abs(row[j])), row[j])
    else:
        for j in range(row.shape[0]):
            row[j] = math.copysign(abs(row[j]) ** alpha, row[j])
    total = 0.0
    for j in range(row.shape[0]):
        total += row[j] * row[j]
    if total > 0:
        scale = 1.0 / math.sqrt(total)
        for j in range(row.shape[0]):
            row[j] *= scale
