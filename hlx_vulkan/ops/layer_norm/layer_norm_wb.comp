#version 450
// dweight and dbias of the fused layer norm: per column, the chunks' partial sums
// (layer_norm.comp, BACKWARD) added in chunk order; one thread per column.
#extension GL_GOOGLE_include_directive : require
#include "float_controls.glsl"
#include "dtypes.glsl"

layout(local_size_x_id = 0) in;

// Bindings and push fields are declared in ops/layer_norm.py (checked against this shader).
layout(std430, binding = 0) writeonly buffer DW { O_STORAGE dw[]; };
layout(std430, binding = 1) writeonly buffer DB { O_STORAGE db[]; };
layout(std430, binding = 2) readonly buffer P { float part[]; };
layout(push_constant) uniform Params {
    uint D, chunks, nd;   // nd: D padded to a multiple of 4 (the partials' row length)
    uint off_dw, off_db, off_p;
} p;

#define OCT float

void main() {
    uint e = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    if (e >= p.D) return;
    float sw = 0.0, sb = 0.0;
    for (uint c = 0u; c < p.chunks; ++c) {
        sw += part[p.off_p + c * p.nd + e];
        sb += part[p.off_p + (p.chunks + c) * p.nd + e];
    }
    dw[p.off_dw + e] = O_STORE(sw);
    db[p.off_db + e] = O_STORE(sb);
}
