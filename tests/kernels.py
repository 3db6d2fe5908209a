"""Small GLSL kernels shared by the tests."""

VECTOR_ADD = """
#version 450
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) writeonly buffer C { float c[]; };
layout(push_constant) uniform Params { uint n; } params;
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < params.n) c[i] = a[i] + b[i];
}
"""

SCALE_UNIFORM = """
#version 450
layout(local_size_x = 64) in;
layout(std430, binding = 0) buffer X { float x[]; };
layout(std140, binding = 1) uniform S { float scale; uint n; } s;
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < s.n) x[i] = x[i] * s.scale;
}
"""

SPIN = """
#version 450
layout(local_size_x = 1) in;
layout(std430, binding = 0) buffer X { uint x[]; };
layout(push_constant) uniform P { uint iters; } p;
void main() {
    uint v = x[0];
    for (uint k = 0; k < p.iters; ++k) { v = v * 1664525u + 1013904223u; }
    x[0] = v;
}
"""

WORKGROUP_SUM = """
#version 450
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer S { float s[]; };
shared float partial[WG];
void main() {
    uint l = gl_LocalInvocationID.x;
    partial[l] = x[gl_GlobalInvocationID.x];
    for (uint half_ = WG / 2u; half_ > 0u; half_ /= 2u) {
        barrier();
        if (l < half_) partial[l] += partial[l + half_];
    }
    if (l == 0u) s[gl_WorkGroupID.x] = partial[0];
}
"""
