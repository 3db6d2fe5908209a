#version 450
// dweight and dbias of the fused layer norm: per column, the chunks' partial sums
// (layer_norm.comp, BACKWARD) added in a fixed order. A workgroup of 32 columns x PARTS
// threads: thread (column, part) adds the chunks [part * per, (part + 1) * per) in order,
// then a fixed shared-memory tree adds the parts. The order follows from the chunk count.
#extension GL_GOOGLE_include_directive : require
#include "float_controls.glsl"
#include "dtypes.glsl"

#define COLS 32u
#define PARTS 8u
layout(local_size_x = 256) in;

// Bindings and push fields are declared in ops/layer_norm.py (checked against this shader).
layout(std430, binding = 0) writeonly buffer DW { O_STORAGE dw[]; };
layout(std430, binding = 1) writeonly buffer DB { O_STORAGE db[]; };
layout(std430, binding = 2) readonly buffer P { float part[]; };
layout(push_constant) uniform Params {
    uint D, chunks, nd;   // nd: D padded to a multiple of 4 (the partials' row length)
    uint off_dw, off_db, off_p;
} p;

#define OCT float

shared vec2 red[PARTS][COLS];

void main() {
    uint col = gl_LocalInvocationID.x % COLS, k = gl_LocalInvocationID.x / COLS;
    uint e = (gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x) * COLS + col;
    uint per = (p.chunks + PARTS - 1u) / PARTS;
    uint c0 = k * per, c1 = min(p.chunks, c0 + per);
    vec2 s = vec2(0.0);
    if (e < p.D) {
        for (uint c = c0; c < c1; ++c) {
            s.x += part[p.off_p + c * p.nd + e];
            s.y += part[p.off_p + (p.chunks + c) * p.nd + e];
        }
    }
    red[k][col] = s;
    barrier();
    for (uint h = PARTS / 2u; h > 0u; h >>= 1u) {
        if (k < h) red[k][col] += red[k + h][col];
        barrier();
    }
    if (k == 0u && e < p.D) {
        dw[p.off_dw + e] = O_STORE(red[0][col].x);
        db[p.off_db + e] = O_STORE(red[0][col].y);
    }
}
