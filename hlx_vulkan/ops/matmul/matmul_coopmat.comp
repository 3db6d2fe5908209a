#version 450
// C[b] = A[b] @ B[b] for float16 (or, retyped by the compiler, bfloat16) operands on
// cooperative-matrix hardware (GL_KHR_cooperative_matrix), accumulating in float32.
//
// A workgroup of SGM x SGN subgroups computes a BM x BN tile; each subgroup an FM x FN block
// of 16x16 fragments, so every A fragment it loads serves FN products and every B fragment
// FM. K goes in steps of BK through shared memory: the workgroup copies each A and B tile from
// global memory in 16-byte pieces (8 elements: one vector load where aligned, else eight
// guarded scalar loads), the next tile is fetched into registers while the current one is
// multiplied, and with STAGES == 2 the shared tiles are double-buffered (one barrier a step).
// Rows of the shared tiles are padded by 16 bytes, so fragment loads hit every bank once.
// Out-of-range rows, columns and k read as zero and are never stored, so any shape runs here.
//
// Order (ops/matmul.py): a workgroup's chunk of k (all of K, or with SPLIT the chunk
// gl_WorkGroupID.z / nbatch of length kc) is one chain of 16x16x16 multiply-adds, k ascending
// from 0 (K padded with zeros to a multiple of 16). Tile shape and vector loads do not change
// it, so every tile gives the same bits.
//
// Defines: SGM SGN FM FN BK STAGES; A_COLS / B_COLS (transposed views, held k-major in shared
// memory and loaded column-major); A_VEC / B_VEC (16-byte loads: aligned, and the contiguous
// dimension a multiple of 8; with both, a K tile wholly inside the operands is loaded from
// running indices with no bounds checks: on an H100 that took 4096^3 from 248 to 292 TFLOP/s);
// O_VEC (16-byte stores); SPLIT 1 (float32 chunk sums into the partial buffer O, added up in chunk
// order by matmul_splitk.comp); SPLIT 2 (the same in one dispatch, elect.glsl; P_VEC: N a multiple
// of 4, partials in 16-byte units); BIAS and ACT (a linear layer's bias and relu applied as each
// output is stored, epilogue.glsl); HLX_COOPMAT_BF16 (the compiler retypes the A and B matrices
// to bfloat16, which glslang 13 cannot spell).
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_control_flow_attributes : require
#include "float_controls.glsl"
#include "dtypes.glsl"

#ifndef SGM
#define SGM 2
#define SGN 4
#define FM 4
#define FN 2
#define BK 32
#define STAGES 2
#endif
#define BM (SGM * FM * 16)
#define BN (SGN * FN * 16)
#define THREADS (32 * SGM * SGN)
layout(local_size_x = THREADS) in;

// Bindings and push fields mirror _BINDINGS and _PUSH in ops/matmul.py.
#if A_VEC
layout(std430, binding = 1) readonly buffer A { uvec4 a[]; };
#else
layout(std430, binding = 1) readonly buffer A { A_STORAGE a[]; };
#endif
#if B_VEC
layout(std430, binding = 2) readonly buffer B { uvec4 b[]; };
#else
layout(std430, binding = 2) readonly buffer B { B_STORAGE b[]; };
#endif
#if O_VEC
layout(std430, binding = 0) writeonly buffer O { uvec4 c[]; };
#else
layout(std430, binding = 0) writeonly buffer O { O_STORAGE c[]; };
#endif

layout(push_constant) uniform Params {
    uint M, N, K;
    uint off_a, off_b, off_o;
    int sa_b, sa_m, sa_k;
    int sb_b, sb_k, sb_n;
    uint kc, nbatch;
#if BIAS
    uint off_z;
    int sz;
#endif
#if SPLIT == 2
    uint off_p, off_c;
#endif
} p;
#include "epilogue.glsl"

// Shared tiles in 16-byte units (8 elements). A row of a tile runs along the operand's
// contiguous dimension: k for A (m with A_COLS), n for B (k with B_COLS).
#if A_COLS
#define A_ROWS BK
#define A_LEN BM
#else
#define A_ROWS BM
#define A_LEN BK
#endif
#if B_COLS
#define B_ROWS BN
#define B_LEN BK
#else
#define B_ROWS BK
#define B_LEN BN
#endif
#define SA (A_LEN / 8 + 1)  // row stride, padded by one unit
#define SB (B_LEN / 8 + 1)
#define A_STAGE (A_ROWS * SA)
#define B_STAGE (B_ROWS * SB)
shared uvec4 As[STAGES * A_STAGE];
shared uvec4 Bs[STAGES * B_STAGE];
#define ELECT_FLAG As[0].x
#define ELECT_T uint
#include "elect.glsl"

#define LA (A_ROWS * A_LEN / 8 / THREADS)
#define LB (B_ROWS * B_LEN / 8 / THREADS)
#if LA * 8 * THREADS != A_ROWS * A_LEN || LB * 8 * THREADS != B_ROWS * B_LEN
#error "tile loads do not divide evenly among the threads"
#endif
// The epilogue stages one 16x16 float fragment per subgroup in As or Bs: 16 rows of 5 units.
#if 80 * SGM * SGN <= STAGES * A_STAGE
#define Os As
#elif 80 * SGM * SGN <= STAGES * B_STAGE
#define Os Bs
#else
#error "the shared tiles are too small to stage the output"
#endif

#define FA coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA>
#define FB coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB>
#define ACC coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>

#if A_KIND == 1
#define A_BITS(v) uint(v)
#else
#define A_BITS(v) uint(float16BitsToUint16(v))
#endif
#if B_KIND == 1
#define B_BITS(v) uint(v)
#else
#define B_BITS(v) uint(float16BitsToUint16(v))
#endif

uvec4 ra[LA], rb[LB];
ACC acc[FM][FN];
uint tid, row0, col0;
int abase, bbase;

// Unit u of a tile: shared row r, elements q * 8 .. q * 8 + 7 of that row.
uvec4 load_a(uint u, uint k0, uint kend) {
    uint r = u / (A_LEN / 8), q = (u % (A_LEN / 8)) * 8u;
#if A_COLS
    uint m = row0 + q, k = k0 + r;
    int step = p.sa_m;
#else
    uint m = row0 + r, k = k0 + q;
    int step = p.sa_k;
#endif
    int idx = abase + int(m) * p.sa_m + int(k) * p.sa_k;
#if A_VEC
    return (m < p.M && k < kend) ? a[idx / 8] : uvec4(0u);
#else
    uint h[8];
    [[unroll]] for (uint j = 0u; j < 8u; ++j) {
#if A_COLS
        bool ok = m + j < p.M && k < kend;
#else
        bool ok = m < p.M && k + j < kend;
#endif
        h[j] = ok ? A_BITS(a[idx + int(j) * step]) : 0u;
    }
    return uvec4(h[0] | h[1] << 16, h[2] | h[3] << 16, h[4] | h[5] << 16, h[6] | h[7] << 16);
#endif
}

uvec4 load_b(uint u, uint k0, uint kend) {
    uint r = u / (B_LEN / 8), q = (u % (B_LEN / 8)) * 8u;
#if B_COLS
    uint n = col0 + r, k = k0 + q;
    int step = p.sb_k;
#else
    uint k = k0 + r, n = col0 + q;
    int step = p.sb_n;
#endif
    int idx = bbase + int(k) * p.sb_k + int(n) * p.sb_n;
#if B_VEC
    return (n < p.N && k < kend) ? b[idx / 8] : uvec4(0u);
#else
    uint h[8];
    [[unroll]] for (uint j = 0u; j < 8u; ++j) {
#if B_COLS
        bool ok = n < p.N && k + j < kend;
#else
        bool ok = n + j < p.N && k < kend;
#endif
        h[j] = ok ? B_BITS(b[idx + int(j) * step]) : 0u;
    }
    return uvec4(h[0] | h[1] << 16, h[2] | h[3] << 16, h[4] | h[5] << 16, h[6] | h[7] << 16);
#endif
}

#if A_VEC && B_VEC
#define RUNNING 1
// Index (in 16-byte units) of this thread's first A and B load in the next K tile; istep: from
// one of its loads to the next; kstep: from one K tile to the next. Set once in main.
int a_next, a_istep, a_kstep, b_next, b_istep, b_kstep;
bool tile_inside;  // the workgroup's rows lie inside M and its columns inside N
#if THREADS % (A_LEN / 8) != 0 || THREADS % (B_LEN / 8) != 0
#error "a thread's loads are not a whole number of tile rows apart"
#endif
#endif

void fetch(uint k0, uint kend) {
#if RUNNING
    // A K tile wholly inside the operands: no bounds checks. Keep this shape (the early return):
    // as an if/else the same loads ran slower on the H100 (matmul_tiled.comp says by how much).
    if (tile_inside && k0 + BK <= kend) {
        [[unroll]] for (uint i = 0u; i < LA; ++i) ra[i] = a[a_next + int(i) * a_istep];
        [[unroll]] for (uint i = 0u; i < LB; ++i) rb[i] = b[b_next + int(i) * b_istep];
        a_next += a_kstep;
        b_next += b_kstep;
        return;
    }
    a_next += a_kstep;
    b_next += b_kstep;
#endif
    [[unroll]] for (uint i = 0u; i < LA; ++i) ra[i] = load_a(tid + i * THREADS, k0, kend);
    [[unroll]] for (uint i = 0u; i < LB; ++i) rb[i] = load_b(tid + i * THREADS, k0, kend);
}

void stash(uint s) {
    [[unroll]] for (uint i = 0u; i < LA; ++i) {
        uint u = tid + i * THREADS;
        As[s * A_STAGE + (u / (A_LEN / 8)) * SA + u % (A_LEN / 8)] = ra[i];
    }
    [[unroll]] for (uint i = 0u; i < LB; ++i) {
        uint u = tid + i * THREADS;
        Bs[s * B_STAGE + (u / (B_LEN / 8)) * SB + u % (B_LEN / 8)] = rb[i];
    }
}

void multiply(uint s, uint wm, uint wn) {
    [[unroll]] for (uint kk = 0u; kk < BK; kk += 16u) {
        FA fa[FM];
        FB fb[FN];
        [[unroll]] for (uint i = 0u; i < FM; ++i) {
            uint m = wm + i * 16u;
#if A_COLS
            coopMatLoad(fa[i], As, s * A_STAGE + kk * SA + m / 8u, SA, gl_CooperativeMatrixLayoutColumnMajor);
#else
            coopMatLoad(fa[i], As, s * A_STAGE + m * SA + kk / 8u, SA, gl_CooperativeMatrixLayoutRowMajor);
#endif
        }
        [[unroll]] for (uint j = 0u; j < FN; ++j) {
            uint n = wn + j * 16u;
#if B_COLS
            coopMatLoad(fb[j], Bs, s * B_STAGE + n * SB + kk / 8u, SB, gl_CooperativeMatrixLayoutColumnMajor);
#else
            coopMatLoad(fb[j], Bs, s * B_STAGE + kk * SB + n / 8u, SB, gl_CooperativeMatrixLayoutRowMajor);
#endif
        }
        [[unroll]] for (uint i = 0u; i < FM; ++i)
            [[unroll]] for (uint j = 0u; j < FN; ++j) acc[i][j] = coopMatMulAdd(fa[i], fb[j], acc[i][j]);
    }
}

#if O_BYTES == 4
#define O_UNIT(v0, v1) (floatBitsToUint(v0))
#elif O_KIND == 1
#define O_UNIT(v0, v1) (uint(O_STORE(v0)) | uint(O_STORE(v1)) << 16)
#else
#define O_UNIT(v0, v1) (uint(float16BitsToUint16(O_STORE(v0))) | uint(float16BitsToUint16(O_STORE(v1))) << 16)
#endif
// Output j of a lane's eight, the layer's epilogue applied (epilogue.glsl).
#define OUT(j) EPILOGUE(v[j], gn + uint(j))

// A lane's eight outputs of row gm, columns gn .. gn + 7 (those inside the product), at cbase.
void store8(uint cbase, uint gm, uint gn, float v[8]) {
    if (gm >= p.M) return;
    uint at = cbase + gm * p.N + gn;
#if O_VEC
    if (gn < p.N) {
#if O_BYTES == 4
        c[at / 4u] = uvec4(O_UNIT(OUT(0), 0), O_UNIT(OUT(1), 0), O_UNIT(OUT(2), 0), O_UNIT(OUT(3), 0));
        c[at / 4u + 1u] = uvec4(O_UNIT(OUT(4), 0), O_UNIT(OUT(5), 0), O_UNIT(OUT(6), 0), O_UNIT(OUT(7), 0));
#else
        c[at / 8u] = uvec4(O_UNIT(OUT(0), OUT(1)), O_UNIT(OUT(2), OUT(3)), O_UNIT(OUT(4), OUT(5)),
                           O_UNIT(OUT(6), OUT(7)));
#endif
    }
#else
    [[unroll]] for (uint e = 0u; e < 8u; ++e)
        if (gn + e < p.N) c[at + e] = O_STORE(OUT(e));
#endif
}

void main() {
    tid = gl_LocalInvocationID.x;
    uint sg = gl_SubgroupID, lane = gl_SubgroupInvocationID;
    uint wm = (sg / SGN) * (FM * 16u), wn = (sg % SGN) * (FN * 16u);
    row0 = gl_WorkGroupID.y * BM;
    col0 = gl_WorkGroupID.x * BN;
#if SPLIT
    uint batch = gl_WorkGroupID.z % p.nbatch, chunk = gl_WorkGroupID.z / p.nbatch;
    uint kbeg = chunk * p.kc, kend = min(p.K, kbeg + p.kc);
#else
    uint batch = gl_WorkGroupID.z, kbeg = 0u, kend = p.K;
#endif
    abase = int(p.off_a) + int(batch) * p.sa_b;
    bbase = int(p.off_b) + int(batch) * p.sb_b;
    [[unroll]] for (uint i = 0u; i < FM; ++i) [[unroll]] for (uint j = 0u; j < FN; ++j) acc[i][j] = ACC(0.0);
#if RUNNING
    tile_inside = row0 + BM <= p.M && col0 + BN <= p.N;
    {
        uint r = tid / (A_LEN / 8), q = (tid % (A_LEN / 8)) * 8u;
#if A_COLS
        a_next = (abase + int(row0 + q) * p.sa_m + int(kbeg + r) * p.sa_k) / 8;
        a_istep = THREADS / (A_LEN / 8) * p.sa_k / 8;
#else
        a_next = (abase + int(row0 + r) * p.sa_m + int(kbeg + q) * p.sa_k) / 8;
        a_istep = THREADS / (A_LEN / 8) * p.sa_m / 8;
#endif
        a_kstep = BK * p.sa_k / 8;
        r = tid / (B_LEN / 8);
        q = (tid % (B_LEN / 8)) * 8u;
#if B_COLS
        b_next = (bbase + int(col0 + r) * p.sb_n + int(kbeg + q) * p.sb_k) / 8;
        b_istep = THREADS / (B_LEN / 8) * p.sb_n / 8;
#else
        b_next = (bbase + int(kbeg + r) * p.sb_k + int(col0 + q) * p.sb_n) / 8;
        b_istep = THREADS / (B_LEN / 8) * p.sb_k / 8;
#endif
        b_kstep = BK * p.sb_k / 8;
    }
#endif

    fetch(kbeg, kend);
#if STAGES == 2
    stash(0u);
    barrier();
    uint s = 0u;
#endif
    for (uint k0 = kbeg; k0 < kend; k0 += BK) {
        bool more = k0 + BK < kend;
#if STAGES == 2
        if (more) fetch(k0 + BK, kend);  // in flight while this tile is multiplied
        multiply(s, wm, wn);
#else
        barrier();  // every subgroup is done with the last tile
        stash(0u);
        barrier();
        if (more) fetch(k0 + BK, kend);
        multiply(0u, wm, wn);
#endif
#if STAGES == 2
        if (more) stash(s ^ 1u);
        barrier();
        s ^= 1u;
#endif
    }

    // Epilogue: each fragment through the subgroup's 16x20-float spot of Os, then 8 outputs a lane.
#if STAGES == 1
    barrier();
#endif
#if SPLIT == 1
    uint cbase = p.off_o + (chunk * p.nbatch + batch) * p.M * p.N;
#else
    uint cbase = p.off_o + batch * p.M * p.N;
#endif
#if SPLIT == 2
    // This chunk's partial; the tile's last chunk to finish adds them all up below.
    uint plane = p.nbatch * p.M * p.N, chunks = gl_NumWorkGroups.z / p.nbatch;
    uint pbase = p.off_p + batch * p.M * p.N;
#endif
    uint spot = sg * 80u, r = lane / 2u, c8 = (lane % 2u) * 8u;
    [[unroll]] for (uint i = 0u; i < FM; ++i) [[unroll]] for (uint j = 0u; j < FN; ++j) {
        coopMatStore(acc[i][j], Os, spot, 5u, gl_CooperativeMatrixLayoutRowMajor);
        subgroupMemoryBarrierShared();
        subgroupBarrier();
        uvec4 u0 = Os[spot + r * 5u + c8 / 4u], u1 = Os[spot + r * 5u + c8 / 4u + 1u];
        subgroupBarrier();  // the spot is read before the next fragment overwrites it
        float v[8] = float[8](uintBitsToFloat(u0.x), uintBitsToFloat(u0.y), uintBitsToFloat(u0.z),
                              uintBitsToFloat(u0.w), uintBitsToFloat(u1.x), uintBitsToFloat(u1.y),
                              uintBitsToFloat(u1.z), uintBitsToFloat(u1.w));
        uint gm = row0 + wm + i * 16u + r, gn = col0 + wn + j * 16u + c8;
#if SPLIT == 2
        if (gm >= p.M) continue;
        uint at = pbase + chunk * plane + gm * p.N + gn;
#if P_VEC
        if (gn < p.N) part[at >> 2] = uintBitsToFloat(u0);
        if (gn + 4u < p.N) part[(at >> 2) + 1u] = uintBitsToFloat(u1);
#else
        [[unroll]] for (uint e = 0u; e < 8u; ++e) if (gn + e < p.N) set_part(at + e, v[e]);
#endif
#else
        store8(cbase, gm, gn, v);
#endif
    }
#if SPLIT == 2
    if (!last_of_tile((batch * gl_NumWorkGroups.y + gl_WorkGroupID.y) * gl_NumWorkGroups.x + gl_WorkGroupID.x, chunks))
        return;
    // The tile's partials added up in chunk order: a lane's eight outputs of each fragment.
    vec4 tot[FM][FN][2];
    for (uint s = 0u; s < chunks; ++s) {
        [[unroll]] for (uint i = 0u; i < FM; ++i) [[unroll]] for (uint j = 0u; j < FN; ++j) {
            uint gm = row0 + wm + i * 16u + r, gn = col0 + wn + j * 16u + c8;
            if (gm >= p.M) continue;
            uint at = pbase + s * plane + gm * p.N + gn;
            vec4 q[2] = vec4[2](vec4(0.0), vec4(0.0));
#if P_VEC
            if (gn < p.N) q[0] = part[at >> 2];
            if (gn + 4u < p.N) q[1] = part[(at >> 2) + 1u];
#else
            [[unroll]] for (uint e = 0u; e < 8u; ++e) if (gn + e < p.N) q[e / 4u][e % 4u] = part_at(at + e);
#endif
            tot[i][j][0] = s == 0u ? q[0] : tot[i][j][0] + q[0];
            tot[i][j][1] = s == 0u ? q[1] : tot[i][j][1] + q[1];
        }
    }
    [[unroll]] for (uint i = 0u; i < FM; ++i) [[unroll]] for (uint j = 0u; j < FN; ++j) {
        vec4 lo = tot[i][j][0], hi = tot[i][j][1];
        float v[8] = float[8](lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w);
        store8(cbase, row0 + wm + i * 16u + r, col0 + wn + j * 16u + c8, v);
    }
#endif
}
