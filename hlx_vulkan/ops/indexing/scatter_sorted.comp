#version 450
// scatter_add for long index rows, without atomics and without walking the whole row per
// output element: the index rows (the index's dim moved last, rows x L) come sorted, stably,
// with the positions they came from (K: sorted keys, P: positions). Each output element finds
// its run of equal keys by binary search and adds the sources of that run in position order:
// self first, then the sources in index order, the order of scatter.comp and of PyTorch's CPU
// loop, so both paths give the same bits.
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

// Bindings and push fields are declared in ops/indexing.py (SCATTER_SORTED).
layout(std430, binding = 0) buffer O { O_STORAGE o[]; };
layout(std430, binding = 1) readonly buffer A { A_STORAGE src[]; };
layout(std430, binding = 2) readonly buffer K { I_STORAGE keys[]; };   // sorted index rows
layout(std430, binding = 3) readonly buffer P { J_STORAGE perm[]; };   // their positions along dim
layout(std430, binding = 4) buffer ERR { int err[]; };
#include "checks.glsl"
// IT: the index arithmetic type (int64_t for int64 indices, else int).

layout(push_constant) uniform Params {
    uint n;              // elements of the output
    uint dim;
    uint L;              // the index's length along dim (the sorted row length)
    uint off_o;
    uint off_a;
    uint off_k;
    uint off_p;
    uint shape[MAXD];    // the output's shape, leading dims padded with 1
    uint ishape[MAXD];   // the index's shape
    int st_a[MAXD];      // the source's strides
    uint site;
} p;

void main() {
    uint t = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    if (t >= p.n) return;
    int ia = int(p.off_a);
    uint rest = t, target = 0u, row = 0u;
    bool inside = true;
    for (int d = MAXD - 1; d >= 0; --d) {
        uint c = rest % p.shape[d];
        rest /= p.shape[d];
        if (uint(d) == p.dim) {
            target = c;
        } else {
            inside = inside && c < p.ishape[d];
            ia += int(c) * p.st_a[d];
        }
    }
    if (!inside) return;
    // The row number: the coordinates off dim, in C order over the index's shape.
    rest = t;
    uint stride = 1u;
    for (int d = MAXD - 1; d >= 0; --d) {
        uint c = rest % p.shape[d];
        rest /= p.shape[d];
        if (uint(d) != p.dim) {
            row += c * stride;
            stride *= p.ishape[d];
        }
    }
    uint base = p.off_k + row * p.L;
    if (target == 0u) {  // a sorted row's ends are its extremes
        IT lo = IT(keys[base]), hi = IT(keys[base + p.L - 1u]);
        if (lo < 0) report_bad_index(p.site, int(max(lo, IT(-2147483647))));
        if (hi >= IT(p.shape[p.dim])) report_bad_index(p.site, int(min(hi, IT(2147483647))));
    }
    // lower_bound of target in keys[base, base + L)
    uint first = 0u, count = p.L;
    while (count > 0u) {
        uint step = count / 2u;
        if (IT(keys[base + first + step]) < IT(target)) {
            first += step + 1u;
            count -= step + 1u;
        } else {
            count = step;
        }
    }
    if (first >= p.L || IT(keys[base + first]) != IT(target)) return;
    CT sum = O_LOAD(o[p.off_o + t]);
    uint pb = p.off_p + row * p.L;
    for (uint j = first; j < p.L && IT(keys[base + j]) == IT(target); ++j) {
        sum += A_LOAD(src[ia + int(perm[pb + j]) * p.st_a[p.dim]]);
    }
    o[p.off_o + t] = O_STORE(OCT(sum));
}
