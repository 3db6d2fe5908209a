#version 450
// The backward of attention_coopmat.comp on cooperative matrices (float16 or bfloat16 operands,
// float32 accumulators), from the forward's row logsumexp (lse) and delta = rowsum(dO * O):
//   P = exp(scale * Q K^T + mask - lse),  dP = dO V^T,  dS = P * (dP - delta),
//   MODE 1  dQ = scale * dS K: a workgroup owns 16 * NSG query rows (16 a subgroup) and walks the
//           key tiles, as the forward does;
//   MODE 2  dV = P^T dO and dK = scale * dS^T Q: a workgroup owns 16 * NSG key rows (16 a
//           subgroup) and walks the query tiles.
// Every gradient is one chain in one fixed order (tiles ascending, 16x16x16 multiply-adds), no
// atomics, so the bits do not depend on the batch or the grid. A tile a causal block cannot see is
// skipped (its P and dS are exactly 0). P and dS go through shared memory as 16-bit values (the A
// operand of the next product), scores and dP as float32: lane l of a subgroup takes row l/2,
// half l%2 of the tile's columns, as in the forward.
//
// Defines: MODE, E, EV (head dims, multiples of 16), BT (columns a tile: keys in MODE 1, queries in
// MODE 2), NSG, HAS_MASK, CAUSAL, QKV_VEC (Q, K, V and dO read as 16-byte units),
// HLX_COOPMAT_BF16.
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_control_flow_attributes : require
#include "float_controls.glsl"
#include "dtypes.glsl"

#define BR (16 * NSG)
#define THREADS (32 * NSG)
layout(local_size_x = THREADS) in;

// Bindings and push fields mirror ops/attention_coopmat.py.
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
#if QKV_VEC
layout(std430, binding = NOUT + 2) readonly buffer Q { uvec4 q[]; };
layout(std430, binding = NOUT + 3) readonly buffer K { uvec4 k[]; };
layout(std430, binding = NOUT + 4) readonly buffer V { uvec4 v[]; };
layout(std430, binding = NOUT + 5) readonly buffer DO { uvec4 dout[]; };
#else
layout(std430, binding = NOUT + 2) readonly buffer Q { A_STORAGE q[]; };
layout(std430, binding = NOUT + 3) readonly buffer K { A_STORAGE k[]; };
layout(std430, binding = NOUT + 4) readonly buffer V { A_STORAGE v[]; };
layout(std430, binding = NOUT + 5) readonly buffer DO { A_STORAGE dout[]; };
#endif
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

#include "attention_coopmat.glsl"
#if !QKV_VEC
UNIT8(q)
UNIT8(k)
UNIT8(v)
UNIT8(dout)
#endif

// The operands: the workgroup's own rows (X: Q and dO in MODE 1, K and V in MODE 2, XA of width DA
// and XB of width DB) stay in registers as A fragments; the tiles (Y: K and V in MODE 1, Q and dO
// in MODE 2) come through shared memory, YA of width DA, YB of width DB.
#if MODE == 1
#define DA E
#define DB EV
#define XLEN p.L
#define YLEN p.S
#else
#define DA E
#define DB EV
#define XLEN p.S
#define YLEN p.L
#endif

// Shared memory in 16-byte units: YA tile, YB tile, then a spot per subgroup (S or dP as float32 of
// row stride SS units, P or dS as 16 bits of row stride PS units, output staging). The workgroup's
// own rows are staged at 0 before the loop.
#define AS (DA / 8 + 1)
#define BS (DB / 8 + 1)
#define SS (BT / 4 + 1)
#define PS (BT / 8 + 1)
#define YA_OFF 0
#define YB_OFF (BT * AS)
#define S_OFF (YB_OFF + BT * BS)
#define SPOT (16 * SS)
#if S_OFF + NSG * SPOT >= BR * (AS + BS)
#define UNITS (S_OFF + NSG * SPOT)
#else
#define UNITS (BR * (AS + BS))
#endif
shared uvec4 sm[UNITS];
#if MODE == 2
shared float tl[BT];  // the query tile's lse (base 2) and delta
shared float td[BT];
#endif

uint tid, lane, sg;
uint qbase, kbase, vbase, dobase;

#if MODE == 1
#define XA_UNIT(row, c) UNIT(q, qbase, row, E, c)
#define XB_UNIT(row, c) UNIT(dout, dobase, row, EV, c)
#define YA_UNIT(row, c) UNIT(k, kbase, row, E, c)
#define YB_UNIT(row, c) UNIT(v, vbase, row, EV, c)
#else
#define XA_UNIT(row, c) UNIT(k, kbase, row, E, c)
#define XB_UNIT(row, c) UNIT(v, vbase, row, EV, c)
#define YA_UNIT(row, c) UNIT(q, qbase, row, E, c)
#define YB_UNIT(row, c) UNIT(dout, dobase, row, EV, c)
#endif

// Stores fragment f (16 x 16 float32, times `mul`) of the subgroup's 16 rows through its spot: row x0 + r.
void store_rows(ACC frag, uint spot, uint x0, uint f, uint width, float mul, uint obase, uint which) {
    coopMatStore(frag, sm, spot, SS, gl_CooperativeMatrixLayoutRowMajor);
    subgroupMemoryBarrierShared();
    subgroupBarrier();
    uint r = lane / 2u, c8 = (lane % 2u) * 8u;
    uvec4 u0 = sm[spot + r * SS + c8 / 4u], u1 = sm[spot + r * SS + c8 / 4u + 1u];
    subgroupBarrier();  // read before the next fragment overwrites the spot
    if (x0 + r < XLEN) {
        uint at = obase + (x0 + r) * width + f * 16u + c8;
        [[unroll]] for (uint c = 0u; c < 4u; ++c) {
            float a = uintBitsToFloat(u0[c]) * mul, b = uintBitsToFloat(u1[c]) * mul;
#if MODE == 1
            dq[at + c] = O_STORE(a);
            dq[at + 4u + c] = O_STORE(b);
#else
            if (which == 0u) {
                dk[at + c] = O_STORE(a);
                dk[at + 4u + c] = O_STORE(b);
            } else {
                dv[at + c] = O_STORE(a);
                dv[at + 4u + c] = O_STORE(b);
            }
#endif
        }
    }
}

void main() {
    tid = gl_LocalInvocationID.x;
    sg = gl_SubgroupID;
    lane = gl_SubgroupInvocationID;
    uint n = gl_WorkGroupID.y;
    uint x0 = gl_WorkGroupID.x * BR;   // the workgroup's first own row
    uint sx0 = x0 + sg * 16u;          // the subgroup's first own row
    qbase = p.off_q + n * p.L * E;
    kbase = p.off_k + n * p.S * E;
    vbase = p.off_v + n * p.S * EV;
    dobase = p.off_do + n * p.L * EV;

    // Own rows to shared memory (zeros past their length), then to registers as A fragments.
    for (uint u = tid; u < BR * DA / 8; u += THREADS) {
        uint r = u / (DA / 8), c = u % (DA / 8);
        sm[r * AS + c] = x0 + r < XLEN ? XA_UNIT(x0 + r, c) : uvec4(0u);
    }
    for (uint u = tid; u < BR * DB / 8; u += THREADS) {
        uint r = u / (DB / 8), c = u % (DB / 8);
        sm[BR * AS + r * BS + c] = x0 + r < XLEN ? XB_UNIT(x0 + r, c) : uvec4(0u);
    }
    barrier();
    FA xa[DA / 16];
    FA xb[DB / 16];
    [[unroll]] for (uint d = 0u; d < DA / 16; ++d)
        coopMatLoad(xa[d], sm, sg * 16u * AS + d * 2u, AS, gl_CooperativeMatrixLayoutRowMajor);
    [[unroll]] for (uint d = 0u; d < DB / 16; ++d)
        coopMatLoad(xb[d], sm, BR * AS + sg * 16u * BS + d * 2u, BS, gl_CooperativeMatrixLayoutRowMajor);
    barrier();

    uint spot = S_OFF + sg * SPOT;
    uint r = lane / 2u, half_ = lane % 2u;
    uint xrow = sx0 + r;  // the lane's own row: a query (MODE 1) or a key (MODE 2)
    bool row_ok = xrow < XLEN;
#if MODE == 1
    float lse2 = row_ok ? lse[p.off_lse + n * p.L + xrow] * LOG2E : 0.0;
    float delta = row_ok ? dlt[p.off_dlt + n * p.L + xrow] : 0.0;
    bool dead = lse2 == NEG_INF;  // a query row with no key: P = 0
    ACC ga[E / 16];
    [[unroll]] for (uint f = 0u; f < E / 16; ++f) ga[f] = ACC(0.0);
#else
    ACC ga[E / 16];  // dK / scale
    ACC gb[EV / 16];  // dV
    [[unroll]] for (uint f = 0u; f < E / 16; ++f) ga[f] = ACC(0.0);
    [[unroll]] for (uint f = 0u; f < EV / 16; ++f) gb[f] = ACC(0.0);
#endif
#if HAS_MASK
    int mb = mask_base(n);
#endif

    uint ystart = 0u, yend = YLEN;
#if CAUSAL && MODE == 1
    yend = min(p.S, x0 + BR);        // query i sees keys j <= i
#elif CAUSAL
    ystart = (x0 / BT) * BT;         // key j is seen by queries i >= j
#endif
    for (uint y0 = ystart; y0 < yend; y0 += BT) {
        barrier();  // every subgroup is done with the last tile
        for (uint u = tid; u < BT * DA / 8; u += THREADS) {
            uint j = u / (DA / 8), c = u % (DA / 8);
            sm[YA_OFF + j * AS + c] = y0 + j < YLEN ? YA_UNIT(y0 + j, c) : uvec4(0u);
        }
        for (uint u = tid; u < BT * DB / 8; u += THREADS) {
            uint j = u / (DB / 8), c = u % (DB / 8);
            sm[YB_OFF + j * BS + c] = y0 + j < YLEN ? YB_UNIT(y0 + j, c) : uvec4(0u);
        }
#if MODE == 2
        for (uint u = tid; u < BT; u += THREADS) {
            bool ok = y0 + u < p.L;
            tl[u] = ok ? lse[p.off_lse + n * p.L + y0 + u] * LOG2E : NEG_INF;
            td[u] = ok ? dlt[p.off_dlt + n * p.L + y0 + u] : 0.0;
        }
#endif
        barrier();
#if CAUSAL && MODE == 1
        if (y0 > sx0 + 15u) continue;       // no key of this tile is visible to the subgroup's queries
#elif CAUSAL
        if (y0 + BT - 1u < sx0) continue;   // no query of this tile sees the subgroup's keys
#endif
        // Scores (MODE 1: S = Q K^T; MODE 2: S^T = K Q^T) into the spot.
        [[unroll]] for (uint f = 0u; f < BT / 16; ++f) {
            ACC s = ACC(0.0);
            [[unroll]] for (uint d = 0u; d < DA / 16; ++d) {
                FB yb;
                coopMatLoad(yb, sm, YA_OFF + f * 16u * AS + d * 2u, AS, gl_CooperativeMatrixLayoutColumnMajor);
                s = coopMatMulAdd(xa[d], yb, s);
            }
            coopMatStore(s, sm, spot + f * 4u, SS, gl_CooperativeMatrixLayoutRowMajor);
        }
        subgroupMemoryBarrierShared();
        subgroupBarrier();

        // P over the lane's half-row (kept in registers for dS).
        float pv[BT / 2];
        [[unroll]] for (uint t = 0u; t < BT / 8; ++t) {
            uvec4 w = sm[spot + r * SS + half_ * (BT / 8) + t];
            [[unroll]] for (uint c = 0u; c < 4u; ++c) {
                uint y = y0 + half_ * (BT / 2) + t * 4u + c;
                float x = uintBitsToFloat(w[c]) * p.scale2;
#if MODE == 1
                uint qi = xrow, kj = y;
                float base2 = lse2;
                bool ok = row_ok && kj < p.S && !dead;
#else
                uint qi = y, kj = xrow;
                float base2 = tl[half_ * (BT / 2) + t * 4u + c];
                bool ok = row_ok && qi < p.L && base2 != NEG_INF;
#endif
#if CAUSAL
                ok = ok && kj <= qi;
#endif
#if HAS_MASK
                if (ok) x += mask[mb + int(qi) * p.mst_l + int(kj) * p.mst_s] * LOG2E;
#endif
                pv[t * 4u + c] = ok ? exp2(x - base2) : 0.0;
            }
        }
        subgroupBarrier();  // the scores are read before P overwrites them

#if MODE == 2
        // dV += P^T dO: P^T (16 bits) through the spot.
        [[unroll]] for (uint t = 0u; t < BT / 16; ++t) {
            uint b[8];
            [[unroll]] for (uint c = 0u; c < 8u; ++c) b[c] = P_BITS(pv[t * 8u + c]);
            sm[spot + r * PS + half_ * (BT / 16) + t] =
                uvec4(b[0] | b[1] << 16, b[2] | b[3] << 16, b[4] | b[5] << 16, b[6] | b[7] << 16);
        }
        subgroupMemoryBarrierShared();
        subgroupBarrier();
        [[unroll]] for (uint kk = 0u; kk < BT / 16; ++kk) {
            FA pa;
            coopMatLoad(pa, sm, spot + kk * 2u, PS, gl_CooperativeMatrixLayoutRowMajor);
            [[unroll]] for (uint f = 0u; f < EV / 16; ++f) {
                FB yb;
                coopMatLoad(yb, sm, YB_OFF + kk * 16u * BS + f * 2u, BS, gl_CooperativeMatrixLayoutRowMajor);
                gb[f] = coopMatMulAdd(pa, yb, gb[f]);
            }
        }
        subgroupBarrier();  // P^T is read before dP^T overwrites it
#endif

        // dP (MODE 1: dO V^T; MODE 2: dP^T = V dO^T) into the spot.
        [[unroll]] for (uint f = 0u; f < BT / 16; ++f) {
            ACC s = ACC(0.0);
            [[unroll]] for (uint d = 0u; d < DB / 16; ++d) {
                FB yb;
                coopMatLoad(yb, sm, YB_OFF + f * 16u * BS + d * 2u, BS, gl_CooperativeMatrixLayoutColumnMajor);
                s = coopMatMulAdd(xb[d], yb, s);
            }
            coopMatStore(s, sm, spot + f * 4u, SS, gl_CooperativeMatrixLayoutRowMajor);
        }
        subgroupMemoryBarrierShared();
        subgroupBarrier();

        // dS = P * (dP - delta), 16 bits, through the spot.
        float ds[BT / 2];
        [[unroll]] for (uint t = 0u; t < BT / 8; ++t) {
            uvec4 w = sm[spot + r * SS + half_ * (BT / 8) + t];
            [[unroll]] for (uint c = 0u; c < 4u; ++c) {
#if MODE == 1
                float dl = delta;
#else
                float dl = td[half_ * (BT / 2) + t * 4u + c];
#endif
                float pr = pv[t * 4u + c];
                ds[t * 4u + c] = pr > 0.0 ? pr * (uintBitsToFloat(w[c]) - dl) : 0.0;
            }
        }
        subgroupBarrier();  // dP is read before dS overwrites it
        [[unroll]] for (uint t = 0u; t < BT / 16; ++t) {
            uint b[8];
            [[unroll]] for (uint c = 0u; c < 8u; ++c) b[c] = P_BITS(ds[t * 8u + c]);
            sm[spot + r * PS + half_ * (BT / 16) + t] =
                uvec4(b[0] | b[1] << 16, b[2] | b[3] << 16, b[4] | b[5] << 16, b[6] | b[7] << 16);
        }
        subgroupMemoryBarrierShared();
        subgroupBarrier();

        // MODE 1: dQ += dS K; MODE 2: dK += dS^T Q.
        [[unroll]] for (uint kk = 0u; kk < BT / 16; ++kk) {
            FA pa;
            coopMatLoad(pa, sm, spot + kk * 2u, PS, gl_CooperativeMatrixLayoutRowMajor);
            [[unroll]] for (uint f = 0u; f < E / 16; ++f) {
                FB yb;
                coopMatLoad(yb, sm, YA_OFF + kk * 16u * AS + f * 2u, AS, gl_CooperativeMatrixLayoutRowMajor);
                ga[f] = coopMatMulAdd(pa, yb, ga[f]);
            }
        }
    }

    barrier();  // the last tile's spots are free
#if MODE == 1
    [[unroll]] for (uint f = 0u; f < E / 16; ++f) store_rows(ga[f], spot, sx0, f, E, p.scale, p.off_dq + n * p.L * E, 0u);
#else
    [[unroll]] for (uint f = 0u; f < E / 16; ++f) store_rows(ga[f], spot, sx0, f, E, p.scale, p.off_dk + n * p.S * E, 0u);
    [[unroll]] for (uint f = 0u; f < EV / 16; ++f) store_rows(gb[f], spot, sx0, f, EV, 1.0, p.off_dv + n * p.S * EV, 1u);
#endif
}
