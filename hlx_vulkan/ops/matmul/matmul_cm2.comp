#version 450
// C[b] = A[b] @ B[b] for float16 or bfloat16 operands on workgroup-scope cooperative matrices
// (GL_NV_cooperative_matrix2), accumulating in float32.
//
// The workgroup holds one BM x BN float32 accumulator; each step of k loads a BM x BK tile of A
// and a BK x BN tile of B straight from global memory through tensor layouts (the driver stages
// them through shared memory itself) and multiply-adds them. A tile wholly inside the operands
// loads through unclamped layouts; one at an edge (or a K not a multiple of BK) through layouts
// that clamp: out-of-range elements read as zero and are never stored.
//
// Order (ops/matmul.py): a workgroup's chunk of k (all of K, or with SPLIT the chunk
// gl_WorkGroupID.z / nbatch of length kc, a multiple of 64) is one chain of multiply-adds, k
// ascending from the chunk's start in steps of BK, the zero padding past its end adding nothing.
//
// Tiles are dealt out GROUP_M block rows at a time (block rows first within a group), so the
// workgroups in flight share their A and B tiles in L2; GROUP_M 0 deals row by row.
//
// Defines: BM BN BK THREADS (THREADS: the workgroup size the device lists for these matrices);
// GROUP_M; UNROLL (steps of k unrolled on the unclamped path); A_COLS / B_COLS (transposed views: the
// operand is stored k-major, read through a transposing tensor view); A_VEC / B_VEC (row
// strides and offsets are multiples of 8 elements, which the compiler may assume);
// SPLIT (float32 chunk sums into the partial buffer O, added in chunk order by
// matmul_splitk.comp); HLX_CM2_BF16 (bfloat16 operands and output).
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_shader_explicit_arithmetic_types : require
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_NV_cooperative_matrix2 : require
#if HLX_CM2_BF16
#extension GL_EXT_bfloat16 : require
#endif
#include "float_controls.glsl"

#ifndef BM
#define BM 128
#define BN 128
#define BK 64
#define THREADS 256
#endif
#ifndef UNROLL
#define UNROLL 4
#endif
#ifndef GROUP_M
#define GROUP_M 0
#endif
layout(local_size_x = THREADS) in;

#if HLX_CM2_BF16
#define T bfloat16_t
#else
#define T float16_t
#endif
#if SPLIT
#define OT float
#else
#define OT T
#endif

// Bindings and push fields mirror _BINDINGS and _PUSH in ops/matmul.py.
layout(std430, binding = 0) writeonly buffer O { OT c[]; };
layout(std430, binding = 1) readonly buffer A { T a[]; };
layout(std430, binding = 2) readonly buffer B { T b[]; };

layout(push_constant) uniform Params {
    uint M, N, K;
    uint off_a, off_b, off_o;
    int sa_b, sa_m, sa_k;
    int sb_b, sb_k, sb_n;
    uint kc, nbatch;
} p;

#define MAT_A coopmat<T, gl_ScopeWorkgroup, BM, BK, gl_MatrixUseA>
#define MAT_B coopmat<T, gl_ScopeWorkgroup, BK, BN, gl_MatrixUseB>
#define ACC coopmat<float, gl_ScopeWorkgroup, BM, BN, gl_MatrixUseAccumulator>
#define CLAMP gl_CooperativeMatrixClampModeConstantNV

// Slices of one step: each layout is (outer dimension, contiguous dimension) of its operand.
#if A_COLS
#define SLICE_A(l, k0) sliceTensorLayoutNV(l, k0, BK, row0, BM), flip
#else
#define SLICE_A(l, k0) sliceTensorLayoutNV(l, row0, BM, k0, BK)
#endif
#if B_COLS
#define SLICE_B(l, k0) sliceTensorLayoutNV(l, col0, BN, k0, BK), flip
#else
#define SLICE_B(l, k0) sliceTensorLayoutNV(l, k0, BK, col0, BN)
#endif
#define STEP(la, lb, k0) {                                      \
        MAT_A ma;                                               \
        MAT_B mb;                                               \
        coopMatLoadTensorNV(ma, a, abase, SLICE_A(la, k0));     \
        coopMatLoadTensorNV(mb, b, bbase, SLICE_B(lb, k0));     \
        acc = coopMatMulAdd(ma, mb, acc);                       \
    }

void main() {
#if GROUP_M > 0
    uint gx = gl_NumWorkGroups.x, gy = gl_NumWorkGroups.y;
    uint id = gl_WorkGroupID.y * gx + gl_WorkGroupID.x, span = GROUP_M * gx;
    uint first = (id / span) * GROUP_M, rows = min(gy - first, uint(GROUP_M)), r = id % span;
    uint row0 = (first + r % rows) * BM, col0 = (r / rows) * BN;
#else
    uint row0 = gl_WorkGroupID.y * BM, col0 = gl_WorkGroupID.x * BN;
#endif
#if SPLIT
    uint batch = gl_WorkGroupID.z % p.nbatch, chunk = gl_WorkGroupID.z / p.nbatch;
    uint kbeg = chunk * p.kc, kend = min(p.K, kbeg + p.kc);
    uint cbase = p.off_o + (chunk * p.nbatch + batch) * p.M * p.N;
#else
    uint batch = gl_WorkGroupID.z, kbeg = 0u, kend = p.K;
    uint cbase = p.off_o + batch * p.M * p.N;
#endif
    uint abase = p.off_a + batch * uint(p.sa_b), bbase = p.off_b + batch * uint(p.sb_b);
    // The stride of each operand's outer dimension (the inner one is 1: ops/matmul.py sees to it).
#if A_COLS
    uint sa = uint(p.sa_k);
#else
    uint sa = uint(p.sa_m);
#endif
#if B_COLS
    uint sb = uint(p.sb_n);
#else
    uint sb = uint(p.sb_k);
#endif
#if A_VEC
    sa &= ~7u;
    abase &= ~7u;
#endif
#if B_VEC
    sb &= ~7u;
    bbase &= ~7u;
#endif
    tensorViewNV<2, false, 1, 0> flip = createTensorViewNV(2, false, 1, 0);
    ACC acc = ACC(0.0);

    uint steps = (kend - kbeg) / BK;
    bool inside = row0 + BM <= p.M && col0 + BN <= p.N && (kend - kbeg) % BK == 0u;
    if (inside) {
        tensorLayoutNV<2> la = createTensorLayoutNV(2), lb = createTensorLayoutNV(2);
#if A_COLS
        la = setTensorLayoutDimensionNV(la, kend, p.M);
#else
        la = setTensorLayoutDimensionNV(la, p.M, kend);
#endif
#if B_COLS
        lb = setTensorLayoutDimensionNV(lb, p.N, kend);
#else
        lb = setTensorLayoutDimensionNV(lb, kend, p.N);
#endif
        la = setTensorLayoutStrideNV(la, sa, 1);
        lb = setTensorLayoutStrideNV(lb, sb, 1);
        uint k0 = kbeg & ~63u, s = 0u;  // a chunk starts at a multiple of 64, which the compiler may assume
        for (; s + UNROLL <= steps; s += UNROLL) {
            [[unroll]] for (uint u = 0u; u < UNROLL; ++u) {
                STEP(la, lb, k0);
                k0 += BK;
            }
        }
        for (; s < steps; ++s) {
            STEP(la, lb, k0);
            k0 += BK;
        }
    } else {
        tensorLayoutNV<2, CLAMP> la = createTensorLayoutNV(2, CLAMP), lb = createTensorLayoutNV(2, CLAMP);
#if A_COLS
        la = setTensorLayoutDimensionNV(la, kend, p.M);
#else
        la = setTensorLayoutDimensionNV(la, p.M, kend);
#endif
#if B_COLS
        lb = setTensorLayoutDimensionNV(lb, p.N, kend);
#else
        lb = setTensorLayoutDimensionNV(lb, kend, p.N);
#endif
        la = setTensorLayoutStrideNV(la, sa, 1);
        lb = setTensorLayoutStrideNV(lb, sb, 1);
        for (uint k0 = kbeg; k0 < kend; k0 += BK) STEP(la, lb, k0);
    }

    // Stores outside M x N are dropped by the clamping layout.
    tensorLayoutNV<2, CLAMP> lo = createTensorLayoutNV(2, CLAMP);
    lo = setTensorLayoutDimensionNV(lo, p.M, p.N);
    lo = setTensorLayoutStrideNV(lo, p.N, 1);
#if SPLIT
    coopMatStoreTensorNV(acc, c, cbase, sliceTensorLayoutNV(lo, row0, BM, col0, BN));
#else
    coopmat<T, gl_ScopeWorkgroup, BM, BN, gl_MatrixUseAccumulator> res =
        coopmat<T, gl_ScopeWorkgroup, BM, BN, gl_MatrixUseAccumulator>(acc);
    coopMatStoreTensorNV(res, c, cbase, sliceTensorLayoutNV(lo, row0, BM, col0, BN));
#endif
}
