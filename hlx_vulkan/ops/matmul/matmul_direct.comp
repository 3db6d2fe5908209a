#version 450
// C[b] = A[b] @ B[b] without shared memory or barriers, for CPU implementations (lavapipe),
// where a workgroup barrier costs more than the loads it saves: 8x8 threads, each a 4x4
// block read straight from the buffers. The reduction order is ops/matmul.py's ("Order"):
// chunks of kc values of k, each summed in order with fma from 0, the chunk sums added in
// chunk order, all in one pass; the tiled kernel with split-K gives the same bits. BIAS, ACT: a
// linear layer's bias and relu applied as each output is stored (epilogue.glsl).
#extension GL_GOOGLE_include_directive : require
#include "float_controls.glsl"
#include "dtypes.glsl"

layout(local_size_x = 8, local_size_y = 8) in;

// Bindings and push fields mirror _BINDINGS and _PUSH in ops/matmul.py.
layout(std430, binding = 0) writeonly buffer O { O_STORAGE c[]; };
layout(std430, binding = 1) readonly buffer A { A_STORAGE a[]; };
layout(std430, binding = 2) readonly buffer B { B_STORAGE b[]; };

// Strides in elements; a batch stride of 0 broadcasts.
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
} p;
#include "epilogue.glsl"

void main() {
    uint row0 = gl_WorkGroupID.y * 32u + gl_LocalInvocationID.y * 4u;
    uint col0 = gl_WorkGroupID.x * 32u + gl_LocalInvocationID.x * 4u;
    uint batch = gl_WorkGroupID.z;
    int abase = int(p.off_a) + int(batch) * p.sa_b;
    int bbase = int(p.off_b) + int(batch) * p.sb_b;
    // Rows and columns past the edge read row/column 0 and are never stored.
    int ar[4], bc[4];
    for (int i = 0; i < 4; ++i) {
        ar[i] = abase + int(row0 + uint(i) < p.M ? row0 + uint(i) : 0u) * p.sa_m;
        bc[i] = bbase + int(col0 + uint(i) < p.N ? col0 + uint(i) : 0u) * p.sb_n;
    }
    float acc[4][4], total[4][4];
    for (int i = 0; i < 4; ++i) for (int j = 0; j < 4; ++j) acc[i][j] = 0.0;
    bool folded = false;
    uint chunk_left = p.kc;
    for (uint k = 0u; k < p.K; ++k) {
        float av[4], bv[4];
        for (int i = 0; i < 4; ++i) av[i] = float(A_LOAD(a[ar[i] + int(k) * p.sa_k]));
        for (int j = 0; j < 4; ++j) bv[j] = float(B_LOAD(b[bc[j] + int(k) * p.sb_k]));
        for (int i = 0; i < 4; ++i) for (int j = 0; j < 4; ++j) acc[i][j] = fma(av[i], bv[j], acc[i][j]);
        if (--chunk_left == 0u && k + 1u < p.K) {  // a chunk ends: add its sum to the total
            for (int i = 0; i < 4; ++i) for (int j = 0; j < 4; ++j) {
                total[i][j] = folded ? total[i][j] + acc[i][j] : acc[i][j];
                acc[i][j] = 0.0;
            }
            folded = true;
            chunk_left = p.kc;
        }
    }
    if (folded)
        for (int i = 0; i < 4; ++i) for (int j = 0; j < 4; ++j) acc[i][j] = total[i][j] + acc[i][j];
    uint cbase = p.off_o + batch * p.M * p.N;
    for (int i = 0; i < 4; ++i) {
        uint gm = row0 + uint(i);
        if (gm >= p.M) continue;
        for (int j = 0; j < 4; ++j) {
            uint gn = col0 + uint(j);
            if (gn < p.N) c[cbase + gm * p.N + gn] = O_STORE(EPILOGUE(acc[i][j], gn));
        }
    }
}
