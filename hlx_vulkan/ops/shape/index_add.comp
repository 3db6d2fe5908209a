#version 450
// out[o, v, i] = sum over j with index[j] == v of src[o, j, i]: the backward of index_select.
// One invocation per output element walks the indices in order: a fixed summation order,
// the same bits on every run, and no atomics on results.
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
    uint n;          // outer * axis_len * inner
    uint nidx;
    uint inner;
    uint axis_len;
    uint off_a;
    uint off_i;
    uint off_o;
    int st_outer;    // source stride between outer rows (nidx * inner)
    int st_axis;     // source stride between index positions (inner)
    int st_inner;
    int st_idx;
    uint wrap;       // negative indices count from the end
    uint site;       // this op's error words
} p;

void main() {
    uint t = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    if (t >= p.n) return;
    uint i = t % p.inner;
    int v = int((t / p.inner) % p.axis_len);
    uint outer = t / (p.inner * p.axis_len);
    int base = int(p.off_a) + int(outer) * p.st_outer + int(i) * p.st_inner;
    int len = int(p.axis_len);
    CT acc = CT(0);
    for (uint j = 0; j < p.nidx; ++j) {
        int raw = int(idx[p.off_i + j * p.st_idx]);
        int k = (p.wrap != 0u && raw < 0) ? raw + len : raw;
        if (k < 0 || k >= len) {
            if (t == 0u) report_bad_index(p.site, raw);   // the first invocation sees every index
        } else if (k == v) {
            acc += CT(A_LOAD(a[base + int(j) * p.st_axis]));
        }
    }
    o[p.off_o + t] = O_STORE(OCT(acc));
}
