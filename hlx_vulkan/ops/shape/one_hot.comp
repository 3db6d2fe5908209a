#version 450
// out[r, c] = (index[r] == c): one_hot, and the class mask of nll_loss / cross_entropy, whose
// rows with the ignored target stay zero.
#extension GL_GOOGLE_include_directive : require
#include "float_controls.glsl"
#include "dtypes.glsl"

layout(local_size_x_id = 0) in;

// Bindings mirror ONE_HOT in ops/shape.py.
layout(std430, binding = 0) writeonly buffer O { O_STORAGE o[]; };
layout(std430, binding = 1) readonly buffer I { I_STORAGE idx[]; };  // int32 or int64 indices
layout(std430, binding = 2) buffer ERR { int err[]; };
#include "checks.glsl"

layout(push_constant) uniform Params {
    uint n;          // rows * classes
    uint classes;
    int ignore;      // a target that gives a zero row (with has_ignore)
    uint has_ignore;
    uint off_i;
    uint off_o;
    uint site;       // this op's error words
} p;

void main() {
    uint t = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    if (t >= p.n) return;
    uint c = t % p.classes;
    int k = int(idx[p.off_i + t / p.classes]);
    bool ignored = p.has_ignore != 0u && k == p.ignore;
    if (!ignored && (k < 0 || k >= int(p.classes)) && c == 0u) report_bad_index(p.site, k);
    o[p.off_o + t] = O_STORE(OCT(k == int(c) && !ignored ? 1 : 0));
}
