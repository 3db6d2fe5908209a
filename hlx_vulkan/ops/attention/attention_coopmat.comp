#version 450
// Scaled-dot-product attention forward on cooperative matrices (GL_KHR_cooperative_matrix,
// 16x16x16, float16 or bfloat16 inputs, float32 accumulators), FlashAttention-2 style.
//
// A workgroup of NSG subgroups owns BQ = 16 * RM * NSG query rows of one (batch, head); subgroup
// sg owns RM blocks of 16 rows from row 16*RM*sg and keeps their Q fragments in registers (RM 2:
// every K and V fragment read from shared memory serves two products). The keys go by in tiles
// of BK: the workgroup copies the K and V tiles to shared memory (16-byte units, rows padded by
// one unit; with PREFETCH the next tile is read into registers while this one is used), then
// each subgroup
//   1. computes S = Q K^T (16 RM x BK, float32) on cooperative matrices and stores it to its own
//      spot of shared memory (a cooperative matrix's elements have no known row),
//   2. walks S by rows: lane l takes row l/2, half l%2 of the keys (RM 2: row l, every key); scale (times log2 e) and
//      mask applied, the running maximum m and sum l updated (online softmax in base 2), the
//      probabilities written back as 16-bit values P, the row's factor exp2(m_old - m_new) to
//      shared memory,
//   3. scales its output accumulators O by those factors and adds P V.
// The row of each accumulator element comes from a matrix R loaded once with R(r, c) = r:
// element-wise operations on cooperative matrices of one type pair their elements, so element
// x of every accumulator lies in row R[x]. At the end O / l goes out through shared memory in
// the output dtype, and each row's logsumexp (natural log, float32; -inf where every key is
// masked, whose output row is zeros, as PyTorch) for the backward.
//
// Order: every output is one fixed chain whatever the batch or the grid: keys ascending in
// tiles of BK; each P V product a chain of 16x16x16 multiply-adds; a row's sum l is the sum of
// its two half-rows' chains (RM 2: one chain). A tile a causal block cannot see is skipped, which changes no bit
// (its factor would be exactly 1 and its P exactly 0).
//
// Defines: E, EV (head dims, multiples of 16), BK (16, 32 or 64), NSG (4 or 8), RM (1 or 2), PREFETCH, HAS_MASK,
// CAUSAL, QKV_VEC
// (Q, K and V read as 16-byte units: their offsets are multiples of 8 elements),
// HLX_COOPMAT_BF16 (bfloat16: the compiler retypes the A and B matrices).
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_control_flow_attributes : require
#include "float_controls.glsl"
#include "dtypes.glsl"

#define BQ (16 * RM * NSG)
#define HALVES (2 / RM)      // lanes a row in the softmax
#define CPL (BK / HALVES)    // columns a lane
#define THREADS (32 * NSG)
layout(local_size_x = THREADS) in;

// Bindings and push fields mirror ops/attention_coopmat.py.
layout(std430, binding = 0) writeonly buffer O { O_STORAGE o[]; };
layout(std430, binding = 1) writeonly buffer Lse { float lse[]; };
#if QKV_VEC
layout(std430, binding = 2) readonly buffer Q { uvec4 q[]; };
layout(std430, binding = 3) readonly buffer K { uvec4 k[]; };
layout(std430, binding = 4) readonly buffer V { uvec4 v[]; };
#else
layout(std430, binding = 2) readonly buffer Q { A_STORAGE q[]; };
layout(std430, binding = 3) readonly buffer K { A_STORAGE k[]; };
layout(std430, binding = 4) readonly buffer V { A_STORAGE v[]; };
#endif
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

// Shared memory in 16-byte units: K tile, V tile, then one spot per subgroup for its S (float32,
// row stride SS units), P (16-bit, row stride PS units) and output staging. Q is staged at 0
// before the loop.
#define KS (E / 8 + 1)
#define VS (EV / 8 + 1)
#define SS (BK / 4 + 1)
#define PS (BK / 8 + 1)
#define K_OFF 0
#define V_OFF (BK * KS)
#define S_OFF (V_OFF + BK * VS)
#define SPOT (16 * RM * SS)
#if S_OFF + NSG * SPOT >= BQ * KS
#define UNITS (S_OFF + NSG * SPOT)
#else
#define UNITS (BQ * KS)
#endif
shared uvec4 sm[UNITS];
shared float rowv[BQ];      // per row: the factor of this tile, then 1 / l
shared float pairv[THREADS]; // a lane's half-row value, for the other lane of its row

#include "attention_coopmat.glsl"
#if !QKV_VEC
UNIT8(q)
UNIT8(k)
UNIT8(v)
#endif

uint tid, qbase, kbase, vbase;

// The K and V rows kt .. kt+BK-1 (zeros past S) into shared memory, or (fetch and stash) through registers.
#define KUNITS (BK * E / 8)
#define VUNITS (BK * EV / 8)
#if PREFETCH
#define LK ((KUNITS + THREADS - 1) / THREADS)
#define LV ((VUNITS + THREADS - 1) / THREADS)
uvec4 rk[LK], rv[LV];

void fetch(uint kt) {
    [[unroll]] for (uint x = 0u; x < LK; ++x) {
        uint u = tid + x * THREADS, j = u / (E / 8), c = u % (E / 8);
        if (u < KUNITS) rk[x] = kt + j < p.S ? UNIT(k, kbase, kt + j, E, c) : uvec4(0u);
    }
    [[unroll]] for (uint x = 0u; x < LV; ++x) {
        uint u = tid + x * THREADS, j = u / (EV / 8), c = u % (EV / 8);
        if (u < VUNITS) rv[x] = kt + j < p.S ? UNIT(v, vbase, kt + j, EV, c) : uvec4(0u);
    }
}

void stash() {
    [[unroll]] for (uint x = 0u; x < LK; ++x) {
        uint u = tid + x * THREADS;
        if (u < KUNITS) sm[K_OFF + (u / (E / 8)) * KS + u % (E / 8)] = rk[x];
    }
    [[unroll]] for (uint x = 0u; x < LV; ++x) {
        uint u = tid + x * THREADS;
        if (u < VUNITS) sm[V_OFF + (u / (EV / 8)) * VS + u % (EV / 8)] = rv[x];
    }
}
#else
void load_tile(uint kt) {
    for (uint u = tid; u < KUNITS; u += THREADS) {
        uint j = u / (E / 8), c = u % (E / 8);
        sm[K_OFF + j * KS + c] = kt + j < p.S ? UNIT(k, kbase, kt + j, E, c) : uvec4(0u);
    }
    for (uint u = tid; u < VUNITS; u += THREADS) {
        uint j = u / (EV / 8), c = u % (EV / 8);
        sm[V_OFF + j * VS + c] = kt + j < p.S ? UNIT(v, vbase, kt + j, EV, c) : uvec4(0u);
    }
}
#endif

void main() {
    tid = gl_LocalInvocationID.x;
    uint sg = gl_SubgroupID, lane = gl_SubgroupInvocationID;
    uint n = gl_WorkGroupID.y;
    uint row0 = gl_WorkGroupID.x * BQ;
    qbase = p.off_q + n * p.L * E;
    kbase = p.off_k + n * p.S * E;
    vbase = p.off_v + n * p.S * EV;

    // Q block to shared memory (zeros past L), each subgroup's fragments to registers.
    for (uint u = tid; u < BQ * E / 8; u += THREADS) {
        uint r = u / (E / 8), c = u % (E / 8);
        sm[r * KS + c] = row0 + r < p.L ? UNIT(q, qbase, row0 + r, E, c) : uvec4(0u);
    }
    barrier();
    FA qa[RM][E / 16];
    [[unroll]] for (uint a = 0u; a < RM; ++a)
        [[unroll]] for (uint d = 0u; d < E / 16; ++d)
            coopMatLoad(qa[a][d], sm, (sg * RM + a) * 16u * KS + d * 2u, KS, gl_CooperativeMatrixLayoutRowMajor);
    barrier();

    // R(r, c) = r, through this subgroup's spot.
    uint spot = S_OFF + sg * SPOT;
    if (lane < 16u) {
        uint bits = floatBitsToUint(float(lane));
        [[unroll]] for (uint c = 0u; c < 4u; ++c) sm[spot + lane * SS + c] = uvec4(bits);
    }
    subgroupMemoryBarrierShared();
    subgroupBarrier();
    ACC R;
    coopMatLoad(R, sm, spot, SS, gl_CooperativeMatrixLayoutRowMajor);
    subgroupBarrier();

    // Lane's row (of the subgroup's 16 RM) and part of the tile's keys.
    uint sr0 = row0 + sg * 16u * RM;  // the subgroup's first row
    uint r = lane / HALVES, half_ = lane % HALVES;
    uint i = sr0 + r;  // query row
    bool row_ok = i < p.L;
#if HAS_MASK
    int mrow = mask_base(n) + int(i) * p.mst_l;
#endif
    float m = NEG_INF, lsum = 0.0;
    ACC acc[RM][EV / 16];
    [[unroll]] for (uint a = 0u; a < RM; ++a)
        [[unroll]] for (uint f = 0u; f < EV / 16; ++f) acc[a][f] = ACC(0.0);

    uint kend = p.S;
#if CAUSAL
    kend = min(p.S, row0 + BQ);
#endif
#if PREFETCH
    fetch(0u);
#endif
    for (uint kt = 0u; kt < kend; kt += BK) {
        barrier();  // every subgroup is done with the last tile
#if PREFETCH
        stash();
        barrier();
        if (kt + BK < kend) fetch(kt + BK);  // in flight while this tile is used
#else
        load_tile(kt);
        barrier();
#endif
#if CAUSAL
        if (kt > sr0 + 16u * RM - 1u) continue;  // no key of this tile is visible to the subgroup's rows
#endif
        // 1. S = Q K^T.
        [[unroll]] for (uint f = 0u; f < BK / 16; ++f) {
            ACC s[RM];
            [[unroll]] for (uint a = 0u; a < RM; ++a) s[a] = ACC(0.0);
            [[unroll]] for (uint d = 0u; d < E / 16; ++d) {
                FB kb;
                coopMatLoad(kb, sm, K_OFF + f * 16u * KS + d * 2u, KS, gl_CooperativeMatrixLayoutColumnMajor);
                [[unroll]] for (uint a = 0u; a < RM; ++a) s[a] = coopMatMulAdd(qa[a][d], kb, s[a]);
            }
            [[unroll]] for (uint a = 0u; a < RM; ++a)
                coopMatStore(s[a], sm, spot + a * 16u * SS + f * 4u, SS, gl_CooperativeMatrixLayoutRowMajor);
        }
        subgroupMemoryBarrierShared();
        subgroupBarrier();

        // 2. Online softmax over the lane's part of its row, in base 2.
        float sv[CPL];
        float tmax = NEG_INF;
        [[unroll]] for (uint t = 0u; t < CPL / 4; ++t) {
            uvec4 w = sm[spot + r * SS + half_ * (CPL / 4) + t];
            [[unroll]] for (uint c = 0u; c < 4u; ++c) {
                uint j = kt + half_ * CPL + t * 4u + c;
                float x = uintBitsToFloat(w[c]) * p.scale2;
                bool ok = j < p.S;
#if CAUSAL
                ok = ok && j <= i;
#endif
#if HAS_MASK
                if (ok && row_ok) x += mask[mrow + int(j) * p.mst_s] * LOG2E;
#endif
                x = ok ? x : NEG_INF;
                sv[t * 4u + c] = x;
                tmax = max(tmax, x);
            }
        }
#if HALVES == 2
        pairv[sg * 32u + lane] = tmax;
        subgroupMemoryBarrierShared();
        subgroupBarrier();
        tmax = max(tmax, pairv[sg * 32u + (lane ^ 1u)]);
#endif
        float mn = max(m, tmax);
        float mu = mn == NEG_INF ? 0.0 : mn;  // a row with no visible key yet: P = 0, factor 0
        float alpha = exp2(m - mu);
        m = mn;
        lsum *= alpha;
        subgroupBarrier();  // S and the pair values are read before P and the factors overwrite them
        [[unroll]] for (uint t = 0u; t < CPL / 8; ++t) {
            uint b[8];
            [[unroll]] for (uint c = 0u; c < 8u; ++c) {
                b[c] = P_BITS(exp2(sv[t * 8u + c] - mu));
                lsum += P_VAL(b[c]);
            }
            sm[spot + r * PS + half_ * (CPL / 8) + t] =
                uvec4(b[0] | b[1] << 16, b[2] | b[3] << 16, b[4] | b[5] << 16, b[6] | b[7] << 16);
        }
        if (half_ == 0u) rowv[sg * 16u * RM + r] = alpha;
        subgroupMemoryBarrierShared();
        subgroupBarrier();

        // 3. O = O * factor(row) + P V.
        [[unroll]] for (uint a = 0u; a < RM; ++a) {
            ACC fac = R;
            for (int x = 0; x < fac.length(); ++x) fac[x] = rowv[(sg * RM + a) * 16u + uint(R[x])];
            [[unroll]] for (uint f = 0u; f < EV / 16; ++f) acc[a][f] = acc[a][f] * fac;
        }
        [[unroll]] for (uint kk = 0u; kk < BK / 16; ++kk) {
            FA pa[RM];
            [[unroll]] for (uint a = 0u; a < RM; ++a)
                coopMatLoad(pa[a], sm, spot + a * 16u * PS + kk * 2u, PS, gl_CooperativeMatrixLayoutRowMajor);
            [[unroll]] for (uint f = 0u; f < EV / 16; ++f) {
                FB vb;
                coopMatLoad(vb, sm, V_OFF + kk * 16u * VS + f * 2u, VS, gl_CooperativeMatrixLayoutRowMajor);
                [[unroll]] for (uint a = 0u; a < RM; ++a) acc[a][f] = coopMatMulAdd(pa[a], vb, acc[a][f]);
            }
        }
    }

    // O / l and the logsumexp; rows past L are computed on zeros and never stored.
    subgroupBarrier();
#if HALVES == 2
    pairv[sg * 32u + lane] = lsum;
    subgroupMemoryBarrierShared();
    subgroupBarrier();
    float l = lsum + pairv[sg * 32u + (lane ^ 1u)];
#else
    float l = lsum;
#endif
    if (half_ == 0u) {
        rowv[sg * 16u * RM + r] = l > 0.0 ? HLX_DIV(1.0, l) : 0.0;  // every key masked out: zeros, as PyTorch
        if (row_ok) lse[p.off_lse + n * p.L + i] = l > 0.0 ? m * LN2 + log(l) : NEG_INF;
    }
    barrier();  // the last tile's spots are free
    uint r16 = lane / 2u, c8 = (lane % 2u) * 8u;  // the staged fragment: lane's row and 8 columns
    [[unroll]] for (uint a = 0u; a < RM; ++a) {
        ACC fac = R;
        for (int x = 0; x < fac.length(); ++x) fac[x] = rowv[(sg * RM + a) * 16u + uint(R[x])];
        uint io = sr0 + a * 16u + r16;
        [[unroll]] for (uint f = 0u; f < EV / 16; ++f) {
            coopMatStore(acc[a][f] * fac, sm, spot, SS, gl_CooperativeMatrixLayoutRowMajor);
            subgroupMemoryBarrierShared();
            subgroupBarrier();
            uvec4 u0 = sm[spot + r16 * SS + c8 / 4u], u1 = sm[spot + r16 * SS + c8 / 4u + 1u];
            subgroupBarrier();  // read before the next fragment overwrites the spot
            if (io < p.L) {
                uint ob = p.off_o + (n * p.L + io) * EV + f * 16u + c8;
                [[unroll]] for (uint c = 0u; c < 4u; ++c) {
                    o[ob + c] = O_STORE(uintBitsToFloat(u0[c]));
                    o[ob + 4u + c] = O_STORE(uintBitsToFloat(u1[c]));
                }
            }
        }
    }
}
