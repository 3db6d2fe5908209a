#version 450
// torch.scatter / scatter_add, without atomics: one invocation per output element walks the
// index along dim in order and takes every source element aimed at it. ADD sums them into the
// element's value in index order (the same bits on every run); otherwise the last one wins.
// O holds a copy of self on entry (contiguous); it is read and written in place.
#extension GL_GOOGLE_include_directive : require
#include "float_controls.glsl"
#include "dtypes.glsl"

#define MAXD 6
#if O_KIND == 1
#define O_LOAD(v) CT(bf16_to_f32(v))
#else
#define O_LOAD(v) CT(v)
#endif
layout(local_size_x_id = 0) in;

// Bindings and push fields are declared in ops/indexing.py (SCATTER).
layout(std430, binding = 0) buffer O { O_STORAGE o[]; };
layout(std430, binding = 1) readonly buffer A { A_STORAGE src[]; };
layout(std430, binding = 2) readonly buffer I { I_STORAGE idx[]; };  // int32 or int64 indices
layout(std430, binding = 3) buffer ERR { int err[]; };
#include "checks.glsl"
// IT: the index arithmetic type (int64_t for int64 indices, else int).

layout(push_constant) uniform Params {
    uint n;              // elements of the output (self's shape)
    uint dim;
    uint off_o;
    uint off_a;
    uint off_i;
    uint shape[MAXD];    // the output's shape, leading dims padded with 1
    uint ishape[MAXD];   // the index's shape, likewise
    int st_a[MAXD];      // the source's strides (elements)
    int st_i[MAXD];      // the index's strides
    uint site;
} p;

void main() {
    uint t = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    if (t >= p.n) return;
    int ia = int(p.off_a), ii = int(p.off_i);
    uint rest = t, target = 0u;
    bool inside = true;  // this element's coordinates off dim fall inside the index's shape
    for (int d = MAXD - 1; d >= 0; --d) {
        uint c = rest % p.shape[d];
        rest /= p.shape[d];
        if (uint(d) == p.dim) {
            target = c;
        } else {
            inside = inside && c < p.ishape[d];
            ia += int(c) * p.st_a[d];
            ii += int(c) * p.st_i[d];
        }
    }
    if (!inside) return;  // O already holds self here
    CT acc = CT(0);
#if ADD
    CT sum = O_LOAD(o[p.off_o + t]);
#endif
    bool hit = false;
    int len = int(p.shape[p.dim]);
    for (uint j = 0u; j < p.ishape[p.dim]; ++j) {
        IT raw = IT(idx[ii + int(j) * p.st_i[p.dim]]);
        if (raw < 0 || raw >= IT(len)) {
            // Each index element is seen by `len` invocations; the one at target 0 reports it.
            if (target == 0u) report_bad_index(p.site, int(clamp(raw, IT(-2147483647), IT(2147483647))));
        } else if (uint(raw) == target) {
            CT v = A_LOAD(src[ia + int(j) * p.st_a[p.dim]]);
#if ADD
            sum += v;
#else
            acc = v;
#endif
            hit = true;
        }
    }
#if ADD
    if (hit) o[p.off_o + t] = O_STORE(OCT(sum));
#else
    if (hit) o[p.off_o + t] = O_STORE(OCT(acc));
#endif
}
