#version 450
// The backward of attention_cm2.comp (and of attention_coopmat.comp: the same saved logsumexp) on
// workgroup-scope cooperative matrices (GL_NV_cooperative_matrix2); the bindings and push block of
// attention_coopmat_bwd.comp. From the row logsumexp lse and delta = rowsum(dO * O):
//   P = exp(scale * Q K^T + mask - lse),  dP = dO V^T,  dS = P * (dP - delta),
//   MODE 1  dQ = scale * dS K: a workgroup owns BR query rows and walks the keys in blocks of BT;
//   MODE 2  dV = P^T dO and dK = scale * dS^T Q: a workgroup owns BR key rows and walks the queries
//           in blocks of BT (its matrices are the transposes: rows are keys, columns queries).
// Row (MODE 1) or column (MODE 2) values (lse in base 2, delta) are read per element with the
// element's index. P and dS are rounded to the 16-bit type as the A operand of the next product.
// Every gradient is one chain in one fixed order (blocks ascending), no atomics. A block a causal
// workgroup cannot see is skipped (its P and dS are exactly 0); P is 0 where lse is -inf (a query
// with no key) and where the score is masked.
//
// Defines: MODE, E, EV, BR, BT, THREADS, HAS_MASK, CAUSAL, ALIGNED (L and S multiples of BR and BT:
// loads unclamped), AT_BF16. Q, K, V and dO start on 16-byte boundaries.
#extension GL_EXT_control_flow_attributes : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_NV_cooperative_matrix2 : require
#include "float_controls.glsl"
#include "dtypes.glsl"
#if AT_BF16
#extension GL_EXT_bfloat16 : require
#define AT bfloat16_t
#else
#define AT float16_t
#endif

layout(local_size_x = THREADS) in;

// Bindings and push fields mirror ops/attention_cm2.py's GRAD_Q and GRAD_KV.
#if MODE == 1
layout(std430, binding = 0) writeonly buffer DQ { O_STORAGE dq[]; };
#define NOUT 1
#else
layout(std430, binding = 0) writeonly buffer DK { O_STORAGE dk[]; };
layout(std430, binding = 1) writeonly buffer DV { O_STORAGE dv[]; };
#define NOUT 2
#endif
layout(std430, binding = NOUT) readonly buffer Lse { float lse[]; };
layout(std430, binding = NOUT + 1) readonly buffer Dlt { float dlt[]; };
layout(std430, binding = NOUT + 2) readonly buffer Q { A_STORAGE q[]; };
layout(std430, binding = NOUT + 3) readonly buffer K { A_STORAGE k[]; };
layout(std430, binding = NOUT + 4) readonly buffer V { A_STORAGE v[]; };
layout(std430, binding = NOUT + 5) readonly buffer DO { A_STORAGE dout[]; };
#if HAS_MASK
layout(std430, binding = NOUT + 6) readonly buffer M { float mask[]; };
#endif

layout(push_constant) uniform Params {
    uint N, L, S;
    float scale2;      // scale * log2(e): scores in base 2
    float scale;
    uint mshape[4];    // the batch dims (padded to four) through which n is split for the mask
    int mst[4];
    int mst_l, mst_s;
    uint off_dq, off_dk, off_dv, off_lse, off_dlt, off_q, off_k, off_v, off_do, off_m;
} p;

#define SCOPE gl_ScopeWorkgroup
#if ALIGNED
#define CLAMP gl_CooperativeMatrixClampModeUndefinedNV
#else
#define CLAMP gl_CooperativeMatrixClampModeConstantNV
#endif
#define MAT_S coopmat<float, SCOPE, BR, BT, gl_MatrixUseAccumulator>
#define MAT_E coopmat<float, SCOPE, BR, E, gl_MatrixUseAccumulator>
#define MAT_EV coopmat<float, SCOPE, BR, EV, gl_MatrixUseAccumulator>
#define NEG_INF uintBitsToFloat(0xFF800000u)
const float LOG2E = 1.4426950408889634;

#if HAS_MASK
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
#endif

// The workgroup's rows are x0.., the block's columns y0..: (query, key) of element (r, c).
#if MODE == 1
#define QI(r, c) (x0 + (r))
#define KJ(r, c) (y0 + (c))
#else
#define QI(r, c) (y0 + (c))
#define KJ(r, c) (x0 + (r))
#endif

// The scaled score (base 2) of element (r, c), masked: -inf where the key is past S or (causal)
// after the query; plus the float mask.
float mask_score(const in uint r, const in uint c, const in float s, const in uint x0, const in uint y0,
                 const in int mrow0) {
    uint i = QI(r, c), j = KJ(r, c);
    bool ok = j < p.S;
#if CAUSAL
    ok = ok && j <= i;
#endif
#if HAS_MASK
    if (ok && i < p.L) return s + mask[mrow0 + int(i) * p.mst_l + int(j) * p.mst_s] * LOG2E;
#endif
    return ok ? s : NEG_INF;
}

// The query's lse (base 2; -inf past L) or delta (0 past L), by the element's query index.
float query_lse2(const in uint r, const in uint c, const in float unused, const in uint x0, const in uint y0,
                 const in uint base) {
    uint i = QI(r, c);
    return i < p.L ? lse[base + i] * LOG2E : NEG_INF;
}

float query_delta(const in uint r, const in uint c, const in float unused, const in uint x0, const in uint y0,
                  const in uint base) {
    uint i = QI(r, c);
    return i < p.L ? dlt[base + i] : 0.0;
}

#if MODE == 1
float store_dq(const in uint r, const in uint c, const in float x, const in uint x0, const in uint base) {
    if (x0 + r < p.L) dq[base + (x0 + r) * E + c] = O_STORE(x);
    return x;
}
#else
float store_dk(const in uint r, const in uint c, const in float x, const in uint x0, const in uint base) {
    if (x0 + r < p.S) dk[base + (x0 + r) * E + c] = O_STORE(x);
    return x;
}

float store_dv(const in uint r, const in uint c, const in float x, const in uint x0, const in uint base) {
    if (x0 + r < p.S) dv[base + (x0 + r) * EV + c] = O_STORE(x);
    return x;
}
#endif

void main() {
    uint n = gl_WorkGroupID.y;
    uint x0 = gl_WorkGroupID.x * BR;
    tensorLayoutNV<2, CLAMP> lq = createTensorLayoutNV(2, CLAMP);
    tensorLayoutNV<2, CLAMP> lk = createTensorLayoutNV(2, CLAMP);
    tensorLayoutNV<2, CLAMP> lv = createTensorLayoutNV(2, CLAMP);
    tensorLayoutNV<2, CLAMP> ldo = createTensorLayoutNV(2, CLAMP);
    lq = setTensorLayoutDimensionNV(lq, p.L, E);
    lk = setTensorLayoutDimensionNV(lk, p.S, E);
    lv = setTensorLayoutDimensionNV(lv, p.S, EV);
    ldo = setTensorLayoutDimensionNV(ldo, p.L, EV);
    tensorViewNV<2, false, 1, 0> transposed = createTensorViewNV(2, false, 1, 0);
    uint qbase = p.off_q + n * p.L * E, kbase = p.off_k + n * p.S * E, vbase = p.off_v + n * p.S * EV;
    uint dobase = p.off_do + n * p.L * EV, rowbase = n * p.L;
#if HAS_MASK
    int mrow0 = mask_base(n);
#else
    int mrow0 = 0;
#endif

#if MODE == 1
    // The workgroup's queries: Q and dO as A operands; lse and delta by row, once.
    coopmat<AT, SCOPE, BR, E, gl_MatrixUseA> xa;
    coopmat<AT, SCOPE, BR, EV, gl_MatrixUseA> xb;
    coopMatLoadTensorNV(xa, q, qbase, sliceTensorLayoutNV(lq, x0, BR, 0, E));
    coopMatLoadTensorNV(xb, dout, dobase, sliceTensorLayoutNV(ldo, x0, BR, 0, EV));
    uint y0 = 0u;
    MAT_S l2, dl;
    coopMatPerElementNV(l2, MAT_S(0.0), query_lse2, x0, y0, p.off_lse + rowbase);
    coopMatPerElementNV(dl, MAT_S(0.0), query_delta, x0, y0, p.off_dlt + rowbase);
    MAT_E ga = MAT_E(0.0);
    uint ystart = 0u, yend = p.S;
#if CAUSAL
    yend = min(p.S, x0 + BR);
#endif
#else
    // The workgroup's keys: K and V as A operands.
    coopmat<AT, SCOPE, BR, E, gl_MatrixUseA> xa;
    coopmat<AT, SCOPE, BR, EV, gl_MatrixUseA> xb;
    coopMatLoadTensorNV(xa, k, kbase, sliceTensorLayoutNV(lk, x0, BR, 0, E));
    coopMatLoadTensorNV(xb, v, vbase, sliceTensorLayoutNV(lv, x0, BR, 0, EV));
    MAT_E ga = MAT_E(0.0);    // dK / scale
    MAT_EV gb = MAT_EV(0.0);  // dV
    uint ystart = 0u, yend = p.L;
#if CAUSAL
    ystart = (x0 / BT) * BT;  // key j is seen by queries i >= j
#endif
#endif

    [[dont_unroll]] for (uint y0 = ystart; y0 < yend; y0 += BT) {
#if MODE == 1
        // S = Q K^T, dP = dO V^T for keys y0 ..
        coopmat<AT, SCOPE, E, BT, gl_MatrixUseB> ya;
        coopmat<AT, SCOPE, EV, BT, gl_MatrixUseB> yb;
        coopMatLoadTensorNV(ya, k, kbase, sliceTensorLayoutNV(lk, y0, BT, 0, E), transposed);
        coopMatLoadTensorNV(yb, v, vbase, sliceTensorLayoutNV(lv, y0, BT, 0, EV), transposed);
        bool edge = y0 + BT > p.S;
#if CAUSAL
        edge = edge || y0 + BT - 1u > x0;
#endif
#else
        // S^T = K Q^T, dP^T = V dO^T for queries y0 ..; their lse and delta by column.
        coopmat<AT, SCOPE, E, BT, gl_MatrixUseB> ya;
        coopmat<AT, SCOPE, EV, BT, gl_MatrixUseB> yb;
        coopMatLoadTensorNV(ya, q, qbase, sliceTensorLayoutNV(lq, y0, BT, 0, E), transposed);
        coopMatLoadTensorNV(yb, dout, dobase, sliceTensorLayoutNV(ldo, y0, BT, 0, EV), transposed);
        MAT_S l2, dl;
        coopMatPerElementNV(l2, MAT_S(0.0), query_lse2, x0, y0, p.off_lse + rowbase);
        coopMatPerElementNV(dl, MAT_S(0.0), query_delta, x0, y0, p.off_dlt + rowbase);
        bool edge = false;  // keys past S are rows never stored; queries past L have lse -inf
#if CAUSAL
        edge = x0 + BR - 1u > y0;
#endif
#endif
#if HAS_MASK
        edge = true;
#endif
        MAT_S s = MAT_S(0.0);
        s = coopMatMulAdd(xa, ya, s);
        s = s * p.scale2;
        if (edge) coopMatPerElementNV(s, s, mask_score, x0, y0, mrow0);
        MAT_S dp = MAT_S(0.0);
        dp = coopMatMulAdd(xb, yb, dp);
        [[unroll]] for (int x = 0; x < s.length(); ++x) {
            float pr = l2[x] == NEG_INF ? 0.0 : exp2(s[x] - l2[x]);
            s[x] = pr;
            dp[x] = pr > 0.0 ? pr * (dp[x] - dl[x]) : 0.0;
        }
        coopmat<AT, SCOPE, BR, BT, gl_MatrixUseA> dsa = coopmat<AT, SCOPE, BR, BT, gl_MatrixUseA>(dp);
#if MODE == 1
        coopmat<AT, SCOPE, BT, E, gl_MatrixUseB> kb;
        coopMatLoadTensorNV(kb, k, kbase, sliceTensorLayoutNV(lk, y0, BT, 0, E));
        ga = coopMatMulAdd(dsa, kb, ga);
#else
        coopmat<AT, SCOPE, BR, BT, gl_MatrixUseA> pa = coopmat<AT, SCOPE, BR, BT, gl_MatrixUseA>(s);
        coopmat<AT, SCOPE, BT, EV, gl_MatrixUseB> dob;
        coopMatLoadTensorNV(dob, dout, dobase, sliceTensorLayoutNV(ldo, y0, BT, 0, EV));
        gb = coopMatMulAdd(pa, dob, gb);
        coopmat<AT, SCOPE, BT, E, gl_MatrixUseB> qb;
        coopMatLoadTensorNV(qb, q, qbase, sliceTensorLayoutNV(lq, y0, BT, 0, E));
        ga = coopMatMulAdd(dsa, qb, ga);
#endif
    }

    ga = ga * p.scale;
#if MODE == 1
    coopMatPerElementNV(ga, ga, store_dq, x0, p.off_dq + n * p.L * E);
#else
    coopMatPerElementNV(ga, ga, store_dk, x0, p.off_dk + n * p.S * E);
    coopMatPerElementNV(gb, gb, store_dv, x0, p.off_dv + n * p.S * EV);
#endif
}
