#version 450
// Stable bitonic sort of rows, on (key, original position) pairs in work buffers K and X of
// rows * P elements (P: the row length R rounded up to a power of two). Positions >= R are
// padding and sort after every real element. Equal keys keep their original order (the
// position breaks ties), so the sort is stable in both directions; NaN sorts as the largest
// key (last ascending, first descending), as torch.sort. No atomics: a fixed network.
//
// MODE 0: fill K and X from the rows of A (contiguous, rows x R).
// MODE 1: one compare-exchange stage (k, j) over global memory.
// MODE 2: stages inside blocks of `block` elements in shared memory: every stage up to k = block
//         when k == 0, else the stages j = block/2 .. 1 of merge k.
// MODE 3: write the first `R_out` of each row: values to O, positions to OI.
#extension GL_GOOGLE_include_directive : require
#include "float_controls.glsl"
#include "dtypes.glsl"

layout(constant_id = 0) const uint WG = 256;
layout(local_size_x_id = 0) in;

// Bindings and push fields are declared in ops/sort.py (one KernelSpec per MODE).
#if MODE == 0
layout(std430, binding = 0) writeonly buffer K { K_STORAGE keys[]; };
layout(std430, binding = 1) writeonly buffer X { int pos[]; };
layout(std430, binding = 2) readonly buffer A { A_STORAGE a[]; };
layout(push_constant) uniform Params { uint total; uint R; uint P; uint off_a; } p;
#elif MODE == 3
layout(std430, binding = 0) writeonly buffer O { O_STORAGE o[]; };
layout(std430, binding = 1) writeonly buffer OI { I_STORAGE oi[]; };
layout(std430, binding = 2) readonly buffer K { K_STORAGE keys[]; };
layout(std430, binding = 3) readonly buffer X { int pos[]; };
layout(push_constant) uniform Params { uint total; uint R_out; uint P; uint off_o; uint off_oi; } p;
#else
layout(std430, binding = 0) buffer K { K_STORAGE keys[]; };
layout(std430, binding = 1) buffer X { int pos[]; };
layout(push_constant) uniform Params { uint total; uint R; uint P; uint k; uint j; uint block; } p;
#endif

#if MODE == 1 || MODE == 2
// Whether (va, ia) comes before (vb, ib).
bool before(K_STORAGE va, int ia, K_STORAGE vb, int ib) {
    bool pa = uint(ia) >= p.R, pb = uint(ib) >= p.R;
    if (pa || pb) return pa == pb ? ia < ib : pb;
#if KIND_FLOAT
    bool na = isnan(va), nb = isnan(vb);
    if (na || nb) {
#if DESCENDING
        return na == nb ? ia < ib : na;
#else
        return na == nb ? ia < ib : nb;
#endif
    }
#endif
    if (va != vb) {
#if DESCENDING
        return va > vb;
#else
        return va < vb;
#endif
    }
    return ia < ib;
}
#endif

#if MODE == 2
shared K_STORAGE sk[2 * WG];
shared int sx[2 * WG];

void stage(uint tid, uint base, uint k, uint j) {
    if (tid < p.block / 2u) {
        uint i = (tid / j) * 2u * j + (tid % j);
        uint l = i + j;
        bool up = (((base + i) % p.P) & k) == 0u;  // the direction by the position in the row
        K_STORAGE vi = sk[i], vl = sk[l];
        int xi = sx[i], xl = sx[l];
        if (up ? before(vl, xl, vi, xi) : before(vi, xi, vl, xl)) {
            sk[i] = vl; sk[l] = vi;
            sx[i] = xl; sx[l] = xi;
        }
    }
}
#endif

void main() {
#if MODE == 2
    uint blk = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    uint base = blk * p.block;
    if (base >= p.total) return;  // uniform across the workgroup
    uint tid = gl_LocalInvocationID.x;
    for (uint e = tid; e < p.block; e += WG) {
        sk[e] = keys[base + e];
        sx[e] = pos[base + e];
    }
    barrier();
    if (p.k == 0u) {
        for (uint k = 2u; k <= p.block; k <<= 1) {
            for (uint j = k >> 1; j > 0u; j >>= 1) {
                stage(tid, base, k, j);
                barrier();
            }
        }
    } else {
        for (uint j = p.block >> 1; j > 0u; j >>= 1) {
            stage(tid, base, p.k, j);
            barrier();
        }
    }
    for (uint e = tid; e < p.block; e += WG) {
        keys[base + e] = sk[e];
        pos[base + e] = sx[e];
    }
#else
    uint t = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
#if MODE == 0
    if (t >= p.total) return;
    uint r = t / p.P, c = t % p.P;
    pos[t] = int(c);
    keys[t] = c < p.R ? K_STORAGE(A_LOAD(a[p.off_a + r * p.R + c])) : K_STORAGE(0);
#elif MODE == 1
    if (t >= p.total / 2u) return;
    uint i = (t / p.j) * 2u * p.j + (t % p.j);
    uint l = i + p.j;
    bool up = ((i % p.P) & p.k) == 0u;
    K_STORAGE vi = keys[i], vl = keys[l];
    int xi = pos[i], xl = pos[l];
    if (up ? before(vl, xl, vi, xi) : before(vi, xi, vl, xl)) {
        keys[i] = vl; keys[l] = vi;
        pos[i] = xl; pos[l] = xi;
    }
#else
    if (t >= p.total) return;
    uint r = t / p.R_out, c = t % p.R_out;
    uint s = r * p.P + c;
    o[p.off_o + t] = O_STORE(OCT(keys[s]));
    oi[p.off_oi + t] = I_STORAGE(pos[s]);
#endif
#endif
}
