#version 450
// BLAKE3 parent levels: I holds n chaining values (8 words each) of one level of the tree, and
// each workgroup reduces its 2*WG of them through log2(2*WG) levels to one, written to O[g]. A
// level pairs its nodes in order, an odd last node going up unchanged, which is BLAKE3's tree
// (left subtrees are the largest power of two of chunks). A parent is the compression of
// left || right from the IV with counter 0, 64 bytes and PARENT, plus ROOT when it is the one
// node of its level (the level below has 2). ops/digest_blake3.py launches it.
#extension GL_EXT_control_flow_attributes : require
#extension GL_GOOGLE_include_directive : require
#include "blake3.glsl"

layout(constant_id = 0) const uint WG = 256;
layout(local_size_x_id = 0) in;

// Bindings and push fields are declared in ops/digest_blake3.py (checked against this shader).
layout(std430, binding = 0) writeonly buffer O { uvec4 o[]; };
layout(std430, binding = 1) readonly buffer I { uvec4 cv[]; };

layout(push_constant) uniform Params {
    uint n;    // chaining values in I
} p;

shared uvec4 level[2u * WG];

// Node j of the next level from nodes 2j and 2j+1 of a level of nl: a parent, or the left one.
void up(inout uvec4 l0, inout uvec4 l1, uvec4 r0, uvec4 r1, uint j, uint nl) {
    if (2u * j + 1u < nl) {
        uvec4 h0 = uvec4(IV0, IV1, IV2, IV3), h1 = uvec4(IV4, IV5, IV6, IV7);
        b3_compress(h0, h1, l0, l1, r0, r1, 0u, 64u, PARENT | (nl == 2u ? ROOT : 0u));
        l0 = h0;
        l1 = h1;
    }
}

void main() {
    uint t = gl_LocalInvocationID.x;
    uint g = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    uint nl = p.n;
    uint j = g * WG + t;
    uvec4 l0 = uvec4(0u), l1 = uvec4(0u);
    if (2u * j < nl) {
        l0 = cv[4u * j];
        l1 = cv[4u * j + 1u];
        if (2u * j + 1u < nl) up(l0, l1, cv[4u * j + 2u], cv[4u * j + 3u], j, nl);
    }
    level[2u * t] = l0;
    level[2u * t + 1u] = l1;
    nl = (nl + 1u) / 2u;
    barrier();
    for (uint w = WG / 2u; w > 0u; w /= 2u) {
        if (t < w) {
            l0 = level[4u * t];
            l1 = level[4u * t + 1u];
            up(l0, l1, level[4u * t + 2u], level[4u * t + 3u], g * w + t, nl);
        }
        barrier();
        if (t < w) {
            level[2u * t] = l0;
            level[2u * t + 1u] = l1;
        }
        barrier();
        nl = (nl + 1u) / 2u;
    }
    if (t == 0u && g * 2u * WG < p.n) {
        o[2u * g] = level[0];
        o[2u * g + 1u] = level[1];
    }
}
