#version 450
// One workgroup per (output element, chunk of the reduced axis): each thread folds a
// fixed stride of the axis, then a fixed shared-memory tree folds the threads.
// The order never depends on scheduling, so the same input gives the same bits.
#extension GL_GOOGLE_include_directive : require
#include "float_controls.glsl"
#include "dtypes.glsl"
#include "math.glsl"

layout(constant_id = 0) const uint WG = 256;
layout(local_size_x_id = 0) in;

// Bindings and push fields are declared in ops/reduce.py (checked against this shader).
layout(std430, binding = 0) writeonly buffer O { O_STORAGE o[]; };
layout(std430, binding = 1) readonly buffer A { A_STORAGE a[]; };
#if OP >= 3
layout(std430, binding = 2) writeonly buffer I { I_STORAGE oi[]; };
#endif

layout(push_constant) uniform Params {
    uint n_groups;   // outputs x chunks
    uint nchunks;
    uint R;          // length of the reduced axis
    uint chunk;      // elements of the axis per workgroup
    float scale;     // multiplies the result (1/R for a mean)
    uint off_a;
    uint off_o;
    uint off_i;      // first element of the index output (arg ops)
    int st_r;        // stride of the reduced axis
    uint shape[4];   // the kept dimensions
    int st[4];
} p;

shared CT sval[WG];
shared int sidx[WG];

// The identities of max and min in the compute type (ops/reduce.py defines KIND_FLOAT,
// KIND_UNSIGNED, KIND_INT64).
#if KIND_FLOAT
#define LOWEST CT(-1.0 / 0.0)
#define HIGHEST CT(1.0 / 0.0)
#elif KIND_INT64
#define LOWEST int64_t(0x8000000000000000ul)
#define HIGHEST int64_t(0x7FFFFFFFFFFFFFFFl)
#elif KIND_UNSIGNED
#define LOWEST 0u
#define HIGHEST 0xFFFFFFFFu
#else
#define LOWEST (-2147483647 - 1)
#define HIGHEST 2147483647
#endif

#if OP == 0
#define INIT CT(0)
#define FOLD(acc, v) ((acc) + (v))
#elif OP == 1 || OP == 3
#define INIT LOWEST
#define FOLD(acc, v) hlx_max(acc, v)
#else
#define INIT HIGHEST
#define FOLD(acc, v) hlx_min(acc, v)
#endif

#if OP >= 3
// Is (bv, bi) preferred to (av, ai)? NaN first, then the larger (argmax) or smaller (argmin)
// value, then the smaller index; an index of -1 marks "no element".
bool better(CT bv, int bi, CT av, int ai) {
    if (bi < 0) return false;
    if (ai < 0) return true;
#if KIND_FLOAT
    bool bn = isnan(bv), an = isnan(av);
    if (bn || an) return bn && (!an || bi < ai);
#endif
#if OP == 3
    if (bv != av) return bv > av;
#else
    if (bv != av) return bv < av;
#endif
    return bi < ai;
}
#endif

void main() {
    uint g = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    if (g >= p.n_groups) return;  // uniform across the workgroup
    uint tid = gl_LocalInvocationID.x;
    uint j = g / p.nchunks;
    uint c = g % p.nchunks;
    int base = int(p.off_a);
    uint rest = j;
    for (int d = 3; d >= 0; --d) {
        base += int(rest % p.shape[d]) * p.st[d];
        rest /= p.shape[d];
    }
    uint r0 = c * p.chunk;
    uint r1 = min(p.R, r0 + p.chunk);
    CT acc = INIT;
    int idx = -1;
    for (uint r = r0 + tid; r < r1; r += WG) {
        CT v = A_LOAD(a[base + int(r) * p.st_r]);
#if OP >= 3
        if (better(v, int(r), acc, idx)) { acc = v; idx = int(r); }
#else
        acc = FOLD(acc, v);
#endif
    }
    sval[tid] = acc;
    sidx[tid] = idx;
    barrier();
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (tid < s) {
#if OP >= 3
            if (better(sval[tid + s], sidx[tid + s], sval[tid], sidx[tid])) {
                sval[tid] = sval[tid + s];
                sidx[tid] = sidx[tid + s];
            }
#else
            sval[tid] = FOLD(sval[tid], sval[tid + s]);
#endif
        }
        barrier();
    }
    if (tid == 0) {
#if OP >= 3
        oi[p.off_i + g] = I_STORAGE(sidx[0]);
        o[p.off_o + g] = O_STORE(OCT(sval[0]));
#else
        o[p.off_o + g] = O_STORE(OCT(sval[0] * CT(p.scale)));
#endif
    }
}
