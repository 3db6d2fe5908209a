#version 450
// C[b] = A[b] @ B[b]: a BM x BN output tile per workgroup of (BM/TM) x (BN/TN) threads,
// each thread a TM x TN block, K in steps of BK through shared memory. Every output sums
// k = 0..K-1 in order, in fp32, so the same inputs give the same bits on every run.
// The launcher picks the tile (ops/matmul.py TILES); the defaults are the small one.
#extension GL_GOOGLE_include_directive : require
#include "float_controls.glsl"
#include "dtypes.glsl"

#ifndef BM
#define BM 64
#define BN 64
#define BK 16
#define TM 4
#define TN 4
#endif
#define RT (BM / TM)   // thread rows
#define CT_ (BN / TN)  // thread columns
#define THREADS (RT * CT_)
layout(local_size_x = CT_, local_size_y = RT) in;

// Bindings mirror BINDING_* in ops/matmul.py.
layout(std430, binding = 0) writeonly buffer O { O_STORAGE c[]; };
layout(std430, binding = 1) readonly buffer A { A_STORAGE a[]; };
layout(std430, binding = 2) readonly buffer B { B_STORAGE b[]; };

// Mirrors PUSH_FORMAT in ops/matmul.py; strides in elements, batch stride 0 broadcasts.
layout(push_constant) uniform Params {
    uint M, N, K;
    uint off_a, off_b, off_o;
    int sa_b, sa_m, sa_k;
    int sb_b, sb_k, sb_n;
} p;

shared float As[BK][BM + 1];
shared float Bs[BK][BN + 1];

void main() {
    uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
    uint tid = ty * uint(CT_) + tx;
    uint row0 = gl_WorkGroupID.y * BM, col0 = gl_WorkGroupID.x * BN;
    uint batch = gl_WorkGroupID.z;
    int abase = int(p.off_a) + int(batch) * p.sa_b;
    int bbase = int(p.off_b) + int(batch) * p.sb_b;
    float acc[TM][TN];
    for (int i = 0; i < TM; ++i) for (int j = 0; j < TN; ++j) acc[i][j] = 0.0;

    for (uint k0 = 0u; k0 < p.K; k0 += BK) {
        // Neighbouring threads load neighbouring addresses: along k when A's rows are contiguous,
        // along m when A is a transposed view (A_COLS). Likewise B along n, or k with B_COLS.
        for (uint e = tid; e < BM * BK; e += uint(THREADS)) {
#if A_COLS
            uint k = e / BM, m = e % BM;
#else
            uint m = e / BK, k = e % BK;
#endif
            uint gm = row0 + m, gk = k0 + k;
            As[k][m] = (gm < p.M && gk < p.K) ? float(A_LOAD(a[abase + int(gm) * p.sa_m + int(gk) * p.sa_k])) : 0.0;
        }
        for (uint e = tid; e < BK * BN; e += uint(THREADS)) {
#if B_COLS
            uint n = e / BK, k = e % BK;
#else
            uint k = e / BN, n = e % BN;
#endif
            uint gk = k0 + k, gn = col0 + n;
            Bs[k][n] = (gk < p.K && gn < p.N) ? float(B_LOAD(b[bbase + int(gk) * p.sb_k + int(gn) * p.sb_n])) : 0.0;
        }
        barrier();
        for (uint k = 0u; k < BK; ++k) {
            float av[TM], bv[TN];
            for (int i = 0; i < TM; ++i) av[i] = As[k][ty + uint(RT) * uint(i)];
            for (int j = 0; j < TN; ++j) bv[j] = Bs[k][tx + uint(CT_) * uint(j)];
            for (int i = 0; i < TM; ++i) for (int j = 0; j < TN; ++j) acc[i][j] += av[i] * bv[j];
        }
        barrier();
    }
    uint cbase = p.off_o + batch * p.M * p.N;
    for (int i = 0; i < TM; ++i) {
        uint gm = row0 + ty + uint(RT) * uint(i);
        if (gm >= p.M) continue;
        for (int j = 0; j < TN; ++j) {
            uint gn = col0 + tx + uint(CT_) * uint(j);
            if (gn < p.N) c[cbase + gm * p.N + gn] = O_STORE(acc[i][j]);
        }
    }
}
