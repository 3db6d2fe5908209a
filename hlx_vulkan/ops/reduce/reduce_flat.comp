#version 450
// Sum, max or min of all n elements of a contiguous float tensor, pass one of two: workgroup c
// folds the elements [c * chunk, (c + 1) * chunk) into O[c]; pass two is this kernel again over
// the partials (one workgroup, chunk >= their count). Thread tid owns the 4-element slots
// s = tid, tid + WG, ... of its chunk; it folds them lane by lane in order (16-byte loads with
// VEC, the same order without), then (l0 . l1) . (l2 . l3), then a fixed shared-memory tree.
// The chunk and WG follow from n alone (ops/reduce_flat.py), so the order does too.
// With SINGLE, both passes run in one dispatch: each workgroup writes its partial to P, and the
// last to finish (an integer counter in C elects it) folds the partials exactly as pass two would.
#extension GL_GOOGLE_include_directive : require
#include "float_controls.glsl"
#include "dtypes.glsl"
#include "vec4.glsl"
#include "math.glsl"

layout(constant_id = 0) const uint WG = 256;
layout(local_size_x_id = 0) in;

#if VEC
layout(std430, binding = 1) readonly buffer A { A_STORAGE4 a[]; };
#else
layout(std430, binding = 1) readonly buffer A { A_STORAGE a[]; };
#endif
layout(std430, binding = 0) writeonly buffer O { O_STORAGE o[]; };
#if SINGLE
layout(std430, binding = 2) coherent buffer P { float part[]; };
layout(std430, binding = 3) coherent buffer C { uint cnt[]; };
#endif

// Bindings and push fields are declared in ops/reduce_flat.py (checked against this shader).
layout(push_constant) uniform Params {
    uint n;          // elements to fold
    uint chunk;      // elements per workgroup, a multiple of 4
    float scale;     // multiplies the result (1/n of the whole for a mean, in the last pass)
    uint off_o, off_a;
#if SINGLE
    uint off_p, off_c;
    float unit;      // 1.0: each partial is multiplied by it, as pass one multiplies by its scale
#endif
} p;

#define CT float
#define OCT float
#if OP == 0
#define INIT 0.0
#define FOLD(u, v) ((u) + (v))
#elif OP == 1
#define INIT (-1.0 / 0.0)
#define FOLD(u, v) hlx_max(u, v)
#else
#define INIT (1.0 / 0.0)
#define FOLD(u, v) hlx_min(u, v)
#endif

shared float red[WG];
#if SINGLE
shared bool last_group;
#endif

float fold_tree(vec4 acc) {
    uint tid = gl_LocalInvocationID.x;
    red[tid] = FOLD(FOLD(acc.x, acc.y), FOLD(acc.z, acc.w));
    barrier();
    for (uint h = WG / 2u; h > 0u; h >>= 1u) {
        if (tid < h) red[tid] = FOLD(red[tid], red[tid + h]);
        barrier();
    }
    return red[0];
}

void main() {
    uint c = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    uint tid = gl_LocalInvocationID.x;
    uint e0 = c * p.chunk;
    if (e0 >= p.n) return;  // uniform across the workgroup
    uint e1 = min(p.n, e0 + p.chunk);
    vec4 acc = vec4(INIT);
    uint e = e0 + 4u * tid;
#if VEC
    // Four loads in flight before their folds, which stay in slot order: the same bits as one at a time.
    for (; e + 12u * WG < e1; e += 16u * WG) {
        vec4 v0 = A4_LOAD(a[(p.off_a + e) >> 2]);
        vec4 v1 = A4_LOAD(a[(p.off_a + e + 4u * WG) >> 2]);
        vec4 v2 = A4_LOAD(a[(p.off_a + e + 8u * WG) >> 2]);
        vec4 v3 = A4_LOAD(a[(p.off_a + e + 12u * WG) >> 2]);
        acc = vec4(FOLD(acc.x, v0.x), FOLD(acc.y, v0.y), FOLD(acc.z, v0.z), FOLD(acc.w, v0.w));
        acc = vec4(FOLD(acc.x, v1.x), FOLD(acc.y, v1.y), FOLD(acc.z, v1.z), FOLD(acc.w, v1.w));
        acc = vec4(FOLD(acc.x, v2.x), FOLD(acc.y, v2.y), FOLD(acc.z, v2.z), FOLD(acc.w, v2.w));
        acc = vec4(FOLD(acc.x, v3.x), FOLD(acc.y, v3.y), FOLD(acc.z, v3.z), FOLD(acc.w, v3.w));
    }
#endif
    for (; e < e1; e += 4u * WG) {
#if VEC
        vec4 v = A4_LOAD(a[(p.off_a + e) >> 2]);   // e1 - e >= 4: n is a multiple of 4 with VEC
        acc = vec4(FOLD(acc.x, v.x), FOLD(acc.y, v.y), FOLD(acc.z, v.z), FOLD(acc.w, v.w));
#else
        for (uint j = 0u; j < 4u; ++j) if (e + j < e1) acc[j] = FOLD(acc[j], float(A_LOAD(a[p.off_a + e + j])));
#endif
    }
    float folded = fold_tree(acc);
#if SINGLE
    uint groups = (p.n + p.chunk - 1u) / p.chunk;
    if (tid == 0u) {
        part[p.off_p + c] = folded * p.unit;
        memoryBarrierBuffer();  // the partial is visible before the count says so
        last_group = atomicAdd(cnt[p.off_c], 1u) == groups - 1u;
    }
    barrier();
    if (!last_group) return;  // uniform across the workgroup
    memoryBarrierBuffer();
    // The second pass's order: four slots per thread over the partials, then the same tree.
    acc = vec4(INIT);
    for (uint q = 4u * tid; q < groups; q += 4u * WG)
        for (uint j = 0u; j < 4u; ++j) if (q + j < groups) acc[j] = FOLD(acc[j], part[p.off_p + q + j]);
    folded = fold_tree(acc);  // every thread read red[0] before the barrier above
    if (tid == 0u) {
        o[p.off_o] = O_STORE(folded * p.scale);
        cnt[p.off_c] = 0u;  // ready for the next dispatch, which the stream orders after this one
    }
#else
    if (tid == 0u) o[p.off_o + c] = O_STORE(folded * p.scale);
#endif
}
