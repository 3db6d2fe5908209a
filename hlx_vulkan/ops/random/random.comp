#version 450
// Counter-based random numbers: invocation i fills elements 4i..4i+3 from
// Philox4x32-10 of the counter (i + offset, stream) under the key (seed).
// With DEVICE_COUNTER (draws inside a captured graph) the offset is read from the
// generator's device counter, which a following dispatch advances (counter.comp).
#extension GL_GOOGLE_include_directive : require
#include "float_controls.glsl"
#include "dtypes.glsl"
#include "philox.glsl"
#include "repro_math.glsl"

layout(local_size_x_id = 0) in;

// Bindings and push fields are declared in ops/random.py (checked against this shader).
layout(std430, binding = 0) writeonly buffer O { O_STORAGE o[]; };
#if DEVICE_COUNTER
layout(std430, binding = 1) readonly buffer Ctr { uint ctr[]; };
#endif

// Mirrors PUSH_FORMAT in ops/random.py.
layout(push_constant) uniform Params {
    uint n;
    uint off_o;
    uint seed_lo, seed_hi;
    uint offset_lo, offset_hi;   // DEVICE_COUNTER: offset_lo is the counter's index in ctr
    float alpha;   // uniform: low bound; normal: mean
    float beta;    // uniform: high - low; normal: std
} p;

void main() {
    uint i = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    if (4u * i >= p.n) return;
#if DEVICE_COUNTER
    uint base_lo = ctr[p.offset_lo], base_hi = ctr[p.offset_lo + 1u];
#else
    uint base_lo = p.offset_lo, base_hi = p.offset_hi;
#endif
    uint lo = i + base_lo;
    uint hi = base_hi + (lo < i ? 1u : 0u);
    uvec4 r = philox4x32_10(uvec4(lo, hi, 0u, 0u), uvec2(p.seed_lo, p.seed_hi));
    float v[4];
#if DIST == 0
    for (int k = 0; k < 4; ++k) {
        precise float u = uniform01(r[k]) * p.beta + p.alpha;
        v[k] = u;
    }
#else
    for (int k = 0; k < 4; k += 2) {
        // Box-Muller; 1 - u keeps the logarithm's argument in (0, 1].
        float u1 = 1.0 - uniform01(r[k]);
        float radius = repro_sqrt(-2.0 * repro_log(u1));
        vec2 sc = repro_sincos_2pi(uniform01(r[k + 1]));
        precise float z0 = radius * sc.y * p.beta + p.alpha;
        precise float z1 = radius * sc.x * p.beta + p.alpha;
        v[k] = z0;
        v[k + 1] = z1;
    }
#endif
    for (uint k = 0u; k < 4u; ++k) {
        uint e = 4u * i + k;
        if (e < p.n) o[p.off_o + e] = O_STORE(v[k]);
    }
}
