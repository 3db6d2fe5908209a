#version 450
// Running sums along one axis: one workgroup per row. Each thread sums a fixed segment of
// the row, thread 0 turns the segment totals into prefixes in order, and each thread rescans
// its segment from its prefix. The order never depends on scheduling: the same bits on every
// run. With REVERSE the row is scanned from its end (the backward pass).
#extension GL_GOOGLE_include_directive : require
#include "float_controls.glsl"
#include "dtypes.glsl"

layout(constant_id = 0) const uint WG = 64;
layout(local_size_x_id = 0) in;

// Bindings and push fields are declared in ops/reduce.py (CUMSUM).
layout(std430, binding = 0) writeonly buffer O { O_STORAGE o[]; };
layout(std430, binding = 1) readonly buffer A { A_STORAGE a[]; };

layout(push_constant) uniform Params {
    uint rows;
    uint R;          // length of the scanned axis
    uint off_a;
    uint off_o;
    int st_r;        // stride of the scanned axis in the input
    int st_ro;       // and in the output
    uint shape[4];   // the other dimensions
    int st[4];
    int st_o[4];
} p;

shared CT part[WG];

#if REVERSE
#define POS(r) (p.R - 1u - (r))
#else
#define POS(r) (r)
#endif

void main() {
    uint row = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    if (row >= p.rows) return;  // uniform across the workgroup
    uint tid = gl_LocalInvocationID.x;
    int base = int(p.off_a), base_o = int(p.off_o);
    uint rest = row;
    for (int d = 3; d >= 0; --d) {
        uint c = rest % p.shape[d];
        rest /= p.shape[d];
        base += int(c) * p.st[d];
        base_o += int(c) * p.st_o[d];
    }
    uint seg = (p.R + WG - 1u) / WG;
    uint r0 = min(p.R, tid * seg);
    uint r1 = min(p.R, r0 + seg);
    CT acc = CT(0);
    for (uint r = r0; r < r1; ++r) acc += A_LOAD(a[base + int(POS(r)) * p.st_r]);
    part[tid] = acc;
    barrier();
    if (tid == 0u) {
        CT run = CT(0);
        for (uint t = 0u; t < WG; ++t) {
            CT v = part[t];
            part[t] = run;
            run += v;
        }
    }
    barrier();
    CT run = part[tid];
    for (uint r = r0; r < r1; ++r) {
        uint q = POS(r);
        run += A_LOAD(a[base + int(q) * p.st_r]);
        o[base_o + int(q) * p.st_ro] = O_STORE(OCT(run));
    }
}
