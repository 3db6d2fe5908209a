#version 450
// Running products along rows of a contiguous (rows, R) tensor: one invocation per row walks
// it in order, as PyTorch's CPU loop does (the same bits on every run).
// MODE 0: o[c] = a[0] * ... * a[c].
// MODE 1: the gradient: o[i] = (a[0] ... a[i-1]) * s[i], with s[i] = g[i] + a[i+1] * s[i+1]
//         (exact where the row holds zeros, unlike dividing the output by the input).
#extension GL_GOOGLE_include_directive : require
#include "float_controls.glsl"
#include "dtypes.glsl"

layout(local_size_x_id = 0) in;

// Bindings and push fields are declared in ops/scan.py (CUMPROD, CUMPROD_GRAD).
#if MODE == 0
layout(std430, binding = 0) writeonly buffer O { O_STORAGE o[]; };
layout(std430, binding = 1) readonly buffer A { A_STORAGE a[]; };
layout(push_constant) uniform Params { uint rows; uint R; uint off_o; uint off_a; } p;
#else
layout(std430, binding = 0) buffer O { float o[]; };
layout(std430, binding = 1) readonly buffer A { A_STORAGE a[]; };
layout(std430, binding = 2) readonly buffer B { B_STORAGE b[]; };
layout(push_constant) uniform Params { uint rows; uint R; uint off_o; uint off_a; uint off_b; } p;
#endif

void main() {
    uint row = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    if (row >= p.rows) return;
    uint base = row * p.R;
#if MODE == 0
    CT run = CT(1);
    for (uint c = 0u; c < p.R; ++c) {
        run *= A_LOAD(a[p.off_a + base + c]);
        o[p.off_o + base + c] = O_STORE(OCT(run));
    }
#else
    CT s = CT(0), next = CT(0);
    for (uint c = p.R; c > 0u; --c) {
        uint i = c - 1u;
        s = B_LOAD(b[p.off_b + base + i]) + next * s;
        o[p.off_o + base + i] = s;
        next = A_LOAD(a[p.off_a + base + i]);
    }
    CT pre = CT(1);
    for (uint i = 0u; i < p.R; ++i) {
        o[p.off_o + base + i] = pre * o[p.off_o + base + i];
        pre *= A_LOAD(a[p.off_a + base + i]);
    }
#endif
}
