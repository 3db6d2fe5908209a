#version 450
// Scaled-dot-product attention forward on workgroup-scope cooperative matrices
// (GL_NV_cooperative_matrix2), FlashAttention-2 style: the forward of attention_coopmat.comp
// (same bindings, push block, outputs and logsumexp), without its trips through shared memory.
//
// A workgroup owns BQ query rows of one (batch, head): Q (BQ x E) is loaded once by tensor
// addressing (rows past L read as zeros). The keys go by in blocks of BK, ascending:
//   S = Q K^T (K^T loaded through a transposed tensor view; keys past S read as zeros),
//   scaled by scale * log2(e) (base 2), masked per element with its row and column
//   (keys past S, causal j > i, the float mask added): -inf,
//   the row maximum by coopMatReduceNV; M' = max(M, rowmax); Mu = M' or 0 where M' = -inf
//   (a row with no visible key yet: P = 0 and factor 0, no NaN),
//   P = exp2(S - Mu) rounded to the 16-bit type, the factor exp2(M - Mu),
//   l = factor * l + rowsum(P) (the rounded P, by a product with a matrix of ones: ROWSUM_MMA,
//   or coopMatReduceNV's sum), O = O * factor + P V.
// The row values (M, l, factor) live smeared across a BQ x BK accumulator; the factor and 1/l
// are widened to BQ x EV by a "smear" row reduction. At the end O / l (zeros where l = 0, as
// PyTorch) and each row's logsumexp (natural log; -inf where every key is masked) are written
// per element (rows past L are not).
//
// Order: fixed whatever the batch or grid: keys ascending in blocks of BK, each product one
// cooperative-matrix chain; a causal block no row of the workgroup can see is not visited (its P
// would be exactly 0 and its factor exactly 1). No atomics.
//
// Defines: E, EV (head dims, multiples of 16), BQ (query rows a workgroup), BK (keys a block),
// THREADS (the workgroup), ROWSUM_MMA, HAS_MASK, CAUSAL, ALIGNED (L % BQ == 0 and S % BK == 0: loads
// unclamped), AT_BF16 (bfloat16 operands). Q, K and V start on 16-byte boundaries.
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

// Bindings and push fields mirror ops/attention_coopmat.py's FORWARD.
layout(std430, binding = 0) writeonly buffer O { O_STORAGE o[]; };
layout(std430, binding = 1) writeonly buffer Lse { float lse[]; };
layout(std430, binding = 2) readonly buffer Q { A_STORAGE q[]; };
layout(std430, binding = 3) readonly buffer K { A_STORAGE k[]; };
layout(std430, binding = 4) readonly buffer V { A_STORAGE v[]; };
#if HAS_MASK
layout(std430, binding = 5) readonly buffer M { float mask[]; };
#endif

layout(push_constant) uniform Params {
    uint N, L, S;
    float scale2;      // scale * log2(e): scores in base 2
    uint mshape[4];    // the batch dims (padded to four) through which n is split for the mask
    int mst[4];
    int mst_l, mst_s;
    uint off_o, off_lse, off_q, off_k, off_v, off_m;
} p;

#define SCOPE gl_ScopeWorkgroup
#if ALIGNED  // L a multiple of BQ and S of BK: no load leaves the tensors
#define CLAMP gl_CooperativeMatrixClampModeUndefinedNV
#else        // rows past L or S read as zeros
#define CLAMP gl_CooperativeMatrixClampModeConstantNV
#endif
#define MAT_S coopmat<float, SCOPE, BQ, BK, gl_MatrixUseAccumulator>
#define MAT_O coopmat<float, SCOPE, BQ, EV, gl_MatrixUseAccumulator>

#define NEG_INF uintBitsToFloat(0xFF800000u)
const float LN2 = 0.6931471805599453;
#if HAS_MASK
const float LOG2E = 1.4426950408889634;

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

float fmax2(const in float a, const in float b) { return max(a, b); }
float fadd2(const in float a, const in float b) { return a + b; }
float smear(const in float a, const in float b) { return a; }

// Score (r, c) of the block at query row0, key kt: -inf where the key is past S or (causal) after
// the query; plus the float mask (base 2) otherwise.
float mask_score(const in uint r, const in uint c, const in float s, const in uint row0, const in uint kt,
                 const in int mrow0) {
    uint i = row0 + r, j = kt + c;
    bool ok = j < p.S;
#if CAUSAL
    ok = ok && j <= i;
#endif
#if HAS_MASK
    if (ok && i < p.L) return s + mask[mrow0 + int(i) * p.mst_l + int(j) * p.mst_s] * LOG2E;
#endif
    return ok ? s : NEG_INF;
}

// The row's logsumexp (natural log) from column 0 of M and l; returns m unchanged.
float store_lse(const in uint r, const in uint c, const in float m, const in float l, const in uint row0,
                const in uint base) {
    if (c == 0u && row0 + r < p.L) lse[base + row0 + r] = l > 0.0 ? m * LN2 + log(l) : NEG_INF;
    return m;
}

float store_o(const in uint r, const in uint c, const in float x, const in uint row0, const in uint base) {
    if (row0 + r < p.L) o[base + (row0 + r) * EV + c] = O_STORE(x);
    return x;
}

void main() {
    uint n = gl_WorkGroupID.y;
    uint row0 = gl_WorkGroupID.x * BQ;

    tensorLayoutNV<2, CLAMP> lq = createTensorLayoutNV(2, CLAMP);
    tensorLayoutNV<2, CLAMP> lk = createTensorLayoutNV(2, CLAMP);
    tensorLayoutNV<2, CLAMP> lv = createTensorLayoutNV(2, CLAMP);
    lq = setTensorLayoutDimensionNV(lq, p.L, E);
    lk = setTensorLayoutDimensionNV(lk, p.S, E);
    lv = setTensorLayoutDimensionNV(lv, p.S, EV);
    tensorViewNV<2, false, 1, 0> transposed = createTensorViewNV(2, false, 1, 0);
    uint qbase = p.off_q + n * p.L * E, kbase = p.off_k + n * p.S * E, vbase = p.off_v + n * p.S * EV;

    coopmat<AT, SCOPE, BQ, E, gl_MatrixUseA> qa;
    coopMatLoadTensorNV(qa, q, qbase, sliceTensorLayoutNV(lq, row0, BQ, 0, E));
#if ROWSUM_MMA
    coopmat<AT, SCOPE, BK, BK, gl_MatrixUseB> ones = coopmat<AT, SCOPE, BK, BK, gl_MatrixUseB>(1.0);
#endif
#if HAS_MASK
    int mrow0 = mask_base(n);
#else
    int mrow0 = 0;
#endif

    MAT_O acc = MAT_O(0.0);
    MAT_S m = MAT_S(NEG_INF), l = MAT_S(0.0);
    uint kend = p.S;
#if CAUSAL
    kend = min(p.S, row0 + BQ);
#endif
    [[dont_unroll]] for (uint kt = 0u; kt < kend; kt += BK) {
        coopmat<AT, SCOPE, E, BK, gl_MatrixUseB> kb;
        coopMatLoadTensorNV(kb, k, kbase, sliceTensorLayoutNV(lk, kt, BK, 0, E), transposed);
        MAT_S s = MAT_S(0.0);
        s = coopMatMulAdd(qa, kb, s);
        s = s * p.scale2;
        bool edge = kt + BK > p.S;
#if CAUSAL
        edge = edge || kt + BK - 1u > row0;
#endif
#if HAS_MASK
        edge = true;
#endif
        if (edge) coopMatPerElementNV(s, s, mask_score, row0, kt, mrow0);

        MAT_S rowmax, fac;
        coopMatReduceNV(rowmax, s, gl_CooperativeMatrixReduceRowNV, fmax2);
        [[unroll]] for (int x = 0; x < s.length(); ++x) {
            float mx = max(m[x], rowmax[x]);
            float z = mx == NEG_INF ? 0.0 : mx;
            fac[x] = exp2(m[x] - z);
            s[x] = exp2(s[x] - z);
            m[x] = mx;
        }
        coopmat<AT, SCOPE, BQ, BK, gl_MatrixUseA> pa = coopmat<AT, SCOPE, BQ, BK, gl_MatrixUseA>(s);
        MAT_S rowsum;
#if ROWSUM_MMA
        rowsum = coopMatMulAdd(pa, ones, MAT_S(0.0));
#else
        MAT_S pr = MAT_S(coopmat<AT, SCOPE, BQ, BK, gl_MatrixUseAccumulator>(s));
        coopMatReduceNV(rowsum, pr, gl_CooperativeMatrixReduceRowNV, fadd2);
#endif
        l = fac * l + rowsum;
        MAT_O facw;
        coopMatReduceNV(facw, fac, gl_CooperativeMatrixReduceRowNV, smear);
        coopmat<AT, SCOPE, BK, EV, gl_MatrixUseB> vb;
        coopMatLoadTensorNV(vb, v, vbase, sliceTensorLayoutNV(lv, kt, BK, 0, EV));
        acc = acc * facw;
        acc = coopMatMulAdd(pa, vb, acc);
    }

    coopMatPerElementNV(m, m, store_lse, l, row0, p.off_lse + n * p.L);
    [[unroll]] for (int x = 0; x < l.length(); ++x) l[x] = l[x] > 0.0 ? HLX_DIV(1.0, l[x]) : 0.0;
    MAT_O inv;
    coopMatReduceNV(inv, l, gl_CooperativeMatrixReduceRowNV, smear);
    acc = acc * inv;
    coopMatPerElementNV(acc, acc, store_o, row0, p.off_o + n * p.L * EV);
}
