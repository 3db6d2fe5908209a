#version 450
// torch.gather: out[c] = a[c with c[dim] replaced by index[c]], over the index's shape
// (up to MAXD dims, every operand strided). One invocation per output element.
#extension GL_GOOGLE_include_directive : require
#include "float_controls.glsl"
#include "dtypes.glsl"

#define MAXD 6
layout(local_size_x_id = 0) in;

// Bindings and push fields are declared in ops/indexing.py (GATHER).
layout(std430, binding = 0) writeonly buffer O { O_STORAGE o[]; };
layout(std430, binding = 1) readonly buffer A { A_STORAGE a[]; };
layout(std430, binding = 2) readonly buffer I { I_STORAGE idx[]; };  // int32 or int64 indices
layout(std430, binding = 3) buffer ERR { int err[]; };
#include "checks.glsl"
// IT: the index arithmetic type (int64_t for int64 indices, else int).

layout(push_constant) uniform Params {
    uint n;              // elements of the index (and of the output)
    uint dim;            // the gathered dim
    uint axis_len;       // a's size along dim
    uint off_o;
    uint off_a;
    uint off_i;
    uint shape[MAXD];    // the index's shape, leading dims padded with 1
    int st_a[MAXD];      // a's strides (elements)
    int st_i[MAXD];      // the index's strides
    uint site;           // this op's error words
} p;

void main() {
    uint t = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    if (t >= p.n) return;
    int ia = int(p.off_a), ii = int(p.off_i), cdim = 0;
    uint rest = t;
    for (int d = MAXD - 1; d >= 0; --d) {
        uint c = rest % p.shape[d];
        rest /= p.shape[d];
        ii += int(c) * p.st_i[d];
        if (uint(d) != p.dim) ia += int(c) * p.st_a[d];
    }
    IT raw = IT(idx[ii]);
    int len = int(p.axis_len);
    if (raw < 0 || raw >= IT(len)) {
        // Host indices were checked before launch; a device index out of range is reported
        // and the read kept in bounds.
        report_bad_index(p.site, int(clamp(raw, IT(-2147483647), IT(2147483647))));
        raw = clamp(raw, IT(0), IT(len - 1));
    }
    o[p.off_o + t] = O_STORE(OCT(A_LOAD(a[ia + int(raw) * p.st_a[p.dim]])));
}
