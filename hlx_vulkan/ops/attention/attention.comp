#version 450
// Fused scaled-dot-product attention, flash style: a workgroup owns BQ consecutive rows of one
// (batch, head) and walks the keys in tiles of BK held in shared memory; each invocation owns one
// row and keeps its running maximum, sum and accumulator, so the L x S scores never exist in memory.
// Every sum runs in one fixed order (keys ascending, or queries ascending), with no atomics.
//   MODE 0  forward: O = softmax(scale * Q K^T + mask) V (with dropout), and the rows' logsumexp.
//   MODE 1  dQ: one invocation per query row, recomputing the probabilities from the logsumexp.
//   MODE 2  dK and dV: one invocation per key row, walking the query tiles.
// Q, K, V (slot A) are contiguous (N, L, E), (N, S, E), (N, S, EV); the mask (float32, additive)
// is read through strides, so a broadcast mask costs nothing. Storage may be fp16/bf16: loads
// convert to float and every sum runs in float32.
// The loops over a head dimension are unrolled: llvmpipe (lavapipe) ends any loop silently after
// 65535 iterations in one invocation, counted over all its runs, which the key loop would pass.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "float_controls.glsl"
#include "dtypes.glsl"
#include "math.glsl"
#include "philox.glsl"

layout(constant_id = 0) const uint WG = 32;
layout(local_size_x_id = 0) in;

// Bindings and push fields are declared in ops/attention.py (checked against this shader).
#if MODE == 0
layout(std430, binding = 0) writeonly buffer O { O_STORAGE o[]; };
layout(std430, binding = 1) writeonly buffer Lse { float lse[]; };
layout(std430, binding = 2) readonly buffer Q { A_STORAGE q[]; };
layout(std430, binding = 3) readonly buffer K { A_STORAGE k[]; };
layout(std430, binding = 4) readonly buffer V { A_STORAGE v[]; };
#if HAS_MASK
layout(std430, binding = 5) readonly buffer M { float mask[]; };
#endif
#elif MODE == 1
layout(std430, binding = 0) writeonly buffer DQ { O_STORAGE dq[]; };
layout(std430, binding = 1) readonly buffer Lse { float lse[]; };
layout(std430, binding = 2) readonly buffer Dlt { float dlt[]; };
layout(std430, binding = 3) readonly buffer Q { A_STORAGE q[]; };
layout(std430, binding = 4) readonly buffer K { A_STORAGE k[]; };
layout(std430, binding = 5) readonly buffer V { A_STORAGE v[]; };
layout(std430, binding = 6) readonly buffer DO { A_STORAGE dout[]; };
#if HAS_MASK
layout(std430, binding = 7) readonly buffer M { float mask[]; };
#endif
#else
layout(std430, binding = 0) writeonly buffer DK { O_STORAGE dk[]; };
layout(std430, binding = 1) writeonly buffer DV { O_STORAGE dv[]; };
layout(std430, binding = 2) readonly buffer Lse { float lse[]; };
layout(std430, binding = 3) readonly buffer Dlt { float dlt[]; };
layout(std430, binding = 4) readonly buffer Q { A_STORAGE q[]; };
layout(std430, binding = 5) readonly buffer K { A_STORAGE k[]; };
layout(std430, binding = 6) readonly buffer V { A_STORAGE v[]; };
layout(std430, binding = 7) readonly buffer DO { A_STORAGE dout[]; };
#if HAS_MASK
layout(std430, binding = 8) readonly buffer M { float mask[]; };
#endif
#endif

// Mirrors _PUSH in ops/attention.py.
layout(push_constant) uniform Params {
    uint N, L, S;
    float scale;
    float p_drop;      // dropout probability; kept values are scaled by keep_scale
    float keep_scale;
    uint seed_lo, seed_hi, ctr_lo, ctr_hi;
    uint mshape[4];    // the batch dims (padded to four) through which n is split for the mask
    int mst[4];
    int mst_l, mst_s;
    uint off_o, off_dq, off_dk, off_dv, off_lse, off_dlt, off_q, off_k, off_v, off_do, off_m;
} p;

// The tiles: in shared memory, or (DIRECT, for CPU devices, where barriers cost more than the loads
// they save) read straight from the buffers. TS(r, e) and TV(r, e) read row r of the tile.
#if DIRECT
#if MODE != 2
#define TS(r, e) float(A_LOAD(k[tk + (r) * E + (e)]))
#define TV(r, e) float(A_LOAD(v[tvb + (r) * EV + (e)]))
#else
#define TS(r, e) float(A_LOAD(q[tk + (r) * E + (e)]))
#define TV(r, e) float(A_LOAD(dout[tvb + (r) * EV + (e)]))
#define TL(r) lse[p.off_lse + n * p.L + qt + (r)]
#define TD(r) dlt[p.off_dlt + n * p.L + qt + (r)]
#endif
#else
shared float ts[BK * E];    // key rows (MODE 2: query rows)
shared float tv[BK * EV];   // value rows (MODE 2: output-gradient rows)
#define TS(r, e) ts[(r) * E + (e)]
#define TV(r, e) tv[(r) * EV + (e)]
#if MODE == 2
shared float tl[BK];
shared float td[BK];
#define TL(r) tl[r]
#define TD(r) td[r]
#endif
#endif

int mask_base(uint n) {
    int b = int(p.off_m);
    uint rest = n;
    for (int d = 3; d >= 0; --d) {
        uint c = rest % p.mshape[d];
        rest /= p.mshape[d];
        b += int(c) * p.mst[d];
    }
    return b;
}

// Whether dropout keeps element (n, i, j): bits of Philox4x32-10 at counter (n*L + i)*ceil(S/4) + j/4.
bool kept(uint n, uint i, uint j) {
    uint idx = (n * p.L + i) * ((p.S + 3u) / 4u) + j / 4u;
    uint lo = idx + p.ctr_lo;
    uint hi = p.ctr_hi + (lo < idx ? 1u : 0u);
    uvec4 r = philox4x32_10(uvec4(lo, hi, 0u, 0u), uvec2(p.seed_lo, p.seed_hi));
    return uniform01(r[j & 3u]) >= p.p_drop;
}

void main() {
    uint tid = gl_LocalInvocationID.x;
    uint n = gl_WorkGroupID.y;
    uint row0 = gl_WorkGroupID.x * WG;
    uint row = row0 + tid;
#if MODE != 2
    // One query row per invocation.
    bool valid = row < p.L;
    uint qbase = p.off_q + (n * p.L + row) * E;
    float qr[E];
    [[unroll]] for (int e = 0; e < E; ++e) qr[e] = valid ? float(A_LOAD(q[qbase + e])) * p.scale : 0.0;
#if HAS_MASK
    int mrow = mask_base(n) + int(row) * p.mst_l;
#endif
    uint kend = p.S;
#if CAUSAL
    kend = min(p.S, row0 + WG);
#endif
#if MODE == 0
    float acc[EV];
    [[unroll]] for (int e = 0; e < EV; ++e) acc[e] = 0.0;
    float m = -1.0 / 0.0, l = 0.0;
#else
    float go[EV];
    uint obase = p.off_do + (n * p.L + row) * EV;
    [[unroll]] for (int e = 0; e < EV; ++e) go[e] = valid ? float(A_LOAD(dout[obase + e])) : 0.0;
    float lr = valid ? lse[p.off_lse + n * p.L + row] : 0.0;
    float dr = valid ? dlt[p.off_dlt + n * p.L + row] : 0.0;
    float g[E];
    [[unroll]] for (int e = 0; e < E; ++e) g[e] = 0.0;
#endif
    for (uint kt = 0u; kt < kend; kt += BK) {
#if DIRECT
        uint tk = p.off_k + (n * p.S + kt) * E, tvb = p.off_v + (n * p.S + kt) * EV;
#else
        barrier();
        for (uint x = tid; x < BK * E; x += WG) {
            uint j = kt + x / E;
            ts[x] = j < p.S ? float(A_LOAD(k[p.off_k + (n * p.S + j) * E + x % E])) : 0.0;
        }
        for (uint x = tid; x < BK * EV; x += WG) {
            uint j = kt + x / EV;
            tv[x] = j < p.S ? float(A_LOAD(v[p.off_v + (n * p.S + j) * EV + x % EV])) : 0.0;
        }
        barrier();
#endif
        if (!valid) continue;
        uint cnt = min(uint(BK), p.S - kt);
#if CAUSAL
        cnt = row >= kt ? min(cnt, row - kt + 1u) : 0u;
#endif
#if MODE == 0
        float sc[BK];
        float tmax = -1.0 / 0.0;
        for (uint r = 0u; r < cnt; ++r) {
            float s = 0.0;
            [[unroll]] for (int e = 0; e < E; ++e) s += qr[e] * TS(r, e);
#if HAS_MASK
            s += mask[mrow + int(kt + r) * p.mst_s];
#endif
            sc[r] = s;
            tmax = hlx_max(tmax, s);
        }
        float mn = hlx_max(m, tmax);
        if (mn == -1.0 / 0.0) continue;  // every key so far is masked out
        float corr = exp(m - mn);
        l *= corr;
        [[unroll]] for (int e = 0; e < EV; ++e) acc[e] *= corr;
        m = mn;
        for (uint r = 0u; r < cnt; ++r) {
            float pr = exp(sc[r] - m);
            l += pr;
#if DROPOUT
            pr = kept(n, row, kt + r) ? pr * p.keep_scale : 0.0;
#endif
            [[unroll]] for (int e = 0; e < EV; ++e) acc[e] += pr * TV(r, e);
        }
#else
        for (uint r = 0u; r < cnt; ++r) {
            float s = 0.0;
            [[unroll]] for (int e = 0; e < E; ++e) s += qr[e] * TS(r, e);
#if HAS_MASK
            s += mask[mrow + int(kt + r) * p.mst_s];
#endif
            float pr = exp(s - lr);
            if (!(pr > 0.0)) continue;  // masked out (or a row with no key at all)
            float dp = 0.0;
            [[unroll]] for (int e = 0; e < EV; ++e) dp += go[e] * TV(r, e);
#if DROPOUT
            dp = kept(n, row, kt + r) ? dp * p.keep_scale : 0.0;
#endif
            float ds = pr * (dp - dr);
            [[unroll]] for (int e = 0; e < E; ++e) g[e] += ds * TS(r, e);
        }
#endif
    }
    if (!valid) return;
#if MODE == 0
    uint ob = p.off_o + (n * p.L + row) * EV;
    float inv = l > 0.0 ? 1.0 / l : 0.0;  // a row with every key masked out gives zeros, as torch
    [[unroll]] for (int e = 0; e < EV; ++e) o[ob + e] = O_STORE(acc[e] * inv);
    lse[p.off_lse + n * p.L + row] = l > 0.0 ? m + log(l) : -1.0 / 0.0;
#else
    uint gb = p.off_dq + (n * p.L + row) * E;
    [[unroll]] for (int e = 0; e < E; ++e) dq[gb + e] = O_STORE(g[e] * p.scale);
#endif
#else
    // MODE 2: one key row per invocation; the query tiles come through shared memory.
    bool valid = row < p.S;
    float kr[E], vr[EV], gk[E], gv[EV];
    [[unroll]] for (int e = 0; e < E; ++e) kr[e] = valid ? float(A_LOAD(k[p.off_k + (n * p.S + row) * E + e])) * p.scale : 0.0;  // dK takes scale again at the end
    [[unroll]] for (int e = 0; e < EV; ++e) vr[e] = valid ? float(A_LOAD(v[p.off_v + (n * p.S + row) * EV + e])) : 0.0;
    [[unroll]] for (int e = 0; e < E; ++e) gk[e] = 0.0;
    [[unroll]] for (int e = 0; e < EV; ++e) gv[e] = 0.0;
#if HAS_MASK
    int mcol = mask_base(n) + int(row) * p.mst_s;
#endif
    uint qstart = 0u;
#if CAUSAL
    qstart = (row0 / BK) * BK;
#endif
    for (uint qt = qstart; qt < p.L; qt += BK) {
#if DIRECT
        uint tk = p.off_q + (n * p.L + qt) * E, tvb = p.off_do + (n * p.L + qt) * EV;
#else
        barrier();
        for (uint x = tid; x < BK * E; x += WG) {
            uint i = qt + x / E;
            ts[x] = i < p.L ? float(A_LOAD(q[p.off_q + (n * p.L + i) * E + x % E])) : 0.0;
        }
        for (uint x = tid; x < BK * EV; x += WG) {
            uint i = qt + x / EV;
            tv[x] = i < p.L ? float(A_LOAD(dout[p.off_do + (n * p.L + i) * EV + x % EV])) : 0.0;
        }
        for (uint x = tid; x < BK; x += WG) {
            uint i = qt + x;
            tl[x] = i < p.L ? lse[p.off_lse + n * p.L + i] : 0.0;
            td[x] = i < p.L ? dlt[p.off_dlt + n * p.L + i] : 0.0;
        }
        barrier();
#endif
        if (!valid) continue;
        uint cnt = min(uint(BK), p.L - qt);
        for (uint r = 0u; r < cnt; ++r) {
#if CAUSAL
            if (qt + r < row) continue;
#endif
            float s = 0.0;
            [[unroll]] for (int e = 0; e < E; ++e) s += kr[e] * TS(r, e);
#if HAS_MASK
            s += mask[mcol + int(qt + r) * p.mst_l];
#endif
            float pr = exp(s - TL(r));
            if (!(pr > 0.0)) continue;
            float dp = 0.0;
            [[unroll]] for (int e = 0; e < EV; ++e) dp += vr[e] * TV(r, e);
            float pk = pr;
#if DROPOUT
            bool keep = kept(n, qt + r, row);
            pk = keep ? pr * p.keep_scale : 0.0;
            dp = keep ? dp * p.keep_scale : 0.0;
#endif
            [[unroll]] for (int e = 0; e < EV; ++e) gv[e] += pk * TV(r, e);
            float ds = pr * (dp - TD(r));
            [[unroll]] for (int e = 0; e < E; ++e) gk[e] += ds * TS(r, e);
        }
    }
    if (!valid) return;
    [[unroll]] for (int e = 0; e < E; ++e) dk[p.off_dk + (n * p.S + row) * E + e] = O_STORE(gk[e] * p.scale);
    [[unroll]] for (int e = 0; e < EV; ++e) dv[p.off_dv + (n * p.S + row) * EV + e] = O_STORE(gv[e]);
#endif
}
