#version 450
// out[o, j, i] = src[o, index[j], i]: index_select / embedding lookup along one axis.
#extension GL_GOOGLE_include_directive : require
#include "float_controls.glsl"
#include "dtypes.glsl"

layout(local_size_x_id = 0) in;

// Bindings and push fields are declared in ops/shape.py (checked against this shader).
layout(std430, binding = 0) writeonly buffer O { O_STORAGE o[]; };
layout(std430, binding = 1) readonly buffer A { A_STORAGE a[]; };
layout(std430, binding = 2) readonly buffer I { I_STORAGE idx[]; };  // int32 or int64 indices
layout(std430, binding = 3) buffer ERR { int err[]; };
#include "checks.glsl"

layout(push_constant) uniform Params {
    uint n;          // outer * nidx * inner
    uint nidx;
    uint inner;
    uint axis_len;
    uint off_a;
    uint off_i;
    uint off_o;
    int st_outer;    // source stride between outer rows (elements)
    int st_axis;
    int st_inner;
    int st_idx;
    uint wrap;       // negative indices count from the end (x[idx]), else they are out of range
    uint site;       // this op's error words
} p;

void main() {
    uint t = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    if (t >= p.n) return;
    uint i = t % p.inner;
    uint j = (t / p.inner) % p.nidx;
    uint outer = t / (p.inner * p.nidx);
    int raw = int(idx[p.off_i + j * p.st_idx]);
    int len = int(p.axis_len);
    int k = (p.wrap != 0u && raw < 0) ? raw + len : raw;
    if (k < 0 || k >= len) {
        // Host indices were checked before launch; a device index out of range is reported (once
        // per index) and the read kept in bounds.
        if (i == 0u && outer == 0u) report_bad_index(p.site, raw);
        k = clamp(k, 0, len - 1);
    }
    o[p.off_o + t] = O_STORE(OCT(A_LOAD(a[int(p.off_a) + int(outer) * p.st_outer + k * p.st_axis + int(i) * p.st_inner])));
}
