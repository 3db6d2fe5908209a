#version 450
// out[i] = factor * a[i]: the README's example of a kernel declared through the contract.
#extension GL_GOOGLE_include_directive : require
#include "dtypes.glsl"

layout(local_size_x = 256) in;
layout(std430, binding = 0) writeonly buffer O { O_STORAGE o[]; };
layout(std430, binding = 1) readonly buffer A { A_STORAGE a[]; };
layout(push_constant) uniform Params {
    uint n;
    float factor;
    uint off_o;
    uint off_a;
} p;

void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < p.n) o[p.off_o + i] = O_STORE(p.factor * A_LOAD(a[p.off_a + i]));
}
