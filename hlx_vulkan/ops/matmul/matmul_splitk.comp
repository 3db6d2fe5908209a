#version 450
// The second pass of a split-K matmul: O[i] = ((P[0][i] + P[1][i]) + P[2][i]) + ..., the float32
// chunk sums added in chunk order (as matmul_direct.comp adds them in its one pass), then
// stored in O's dtype (a linear layer's bias and relu applied first where BIAS and ACT say,
// epilogue.glsl). No atomics: the same partials always give the same bits.
#extension GL_GOOGLE_include_directive : require
#include "float_controls.glsl"
#include "dtypes.glsl"

layout(local_size_x = 256) in;

// Bindings and push fields mirror SPLITK_REDUCE in ops/matmul.py.
layout(std430, binding = 0) writeonly buffer O { O_STORAGE c[]; };
layout(std430, binding = 1) readonly buffer P { float part[]; };

layout(push_constant) uniform Params {
    uint n, nsplit;
    uint off_o, off_p;
#if BIAS
    uint cols;  // the product's N: element i is in column i % cols
    uint off_z;
    int sz;
#endif
} p;
#define Z_BINDING 2
#include "epilogue.glsl"

void main() {
    uint i = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    if (i >= p.n) return;
    float t = part[p.off_p + i];
    for (uint s = 1u; s < p.nsplit; ++s) t += part[p.off_p + s * p.n + i];
    t = EPILOGUE(t, i % p.cols);  // t itself without BIAS and ACT
    c[p.off_o + i] = O_STORE(t);
}
