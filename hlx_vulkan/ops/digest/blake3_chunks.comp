#version 450
// BLAKE3 chunk chaining values: chunk c is A's bytes [1024c, 1024c + 1024) (the last one
// shorter, at least 1 byte: an empty input is hashed on the host), its blocks compressed in
// order from the IV with counter c, CHUNK_START on the first, CHUNK_END on the last, which is
// zero-padded and has its true length; `root` (ROOT when there is only one chunk) joins the
// last block's flags. CV c goes to O's words 8c..8c+7. ops/digest_blake3.py launches it.
// VARIANT 0: one invocation per chunk, each loading its own 64-byte blocks (16-byte loads).
// VARIANT 1: the same, but the workgroup stages its chunks through shared memory 256 bytes of
// each at a time, 16 neighbouring invocations loading one chunk's 256 (wide, coalesced loads).
#extension GL_EXT_control_flow_attributes : require
#extension GL_GOOGLE_include_directive : require
#include "blake3.glsl"

layout(constant_id = 0) const uint WG = 64;
layout(local_size_x_id = 0) in;

// Bindings and push fields are declared in ops/digest_blake3.py (checked against this shader).
layout(std430, binding = 0) writeonly buffer O { uvec4 o[]; };
layout(std430, binding = 1) readonly buffer A { uvec4 a[]; };

layout(push_constant) uniform Params {
    uint chunks;   // invocations that hash
    uint nbytes;   // bytes in all (> 0)
    uint q0;       // A's first byte, in 16-byte units from the start of the binding
    uint root;     // ROOT if chunks == 1, else 0
} p;

// 16-byte unit k of a block that holds rem (1..64) message bytes from unit q: bytes past rem
// are zero, and a unit with no message byte is not read.
uvec4 load_masked(uint q, uint k, uint rem) {
    int valid = int(rem) - int(16u * k);
    if (valid <= 0) return uvec4(0u);
    uvec4 v = a[q + k];
    if (valid >= 16) return v;
    ivec4 bytes = clamp(ivec4(valid) - ivec4(0, 4, 8, 12), ivec4(0), ivec4(4));
    uvec4 keep = mix((uvec4(1u) << (8u * uvec4(bytes))) - 1u, uvec4(0xffffffffu), equal(bytes, ivec4(4)));
    return v & keep;
}

uint chunk_len(uint c) { return c < p.chunks ? min(1024u, p.nbytes - 1024u * c) : 0u; }

#if VARIANT == 1
// Four blocks (256 bytes) of each of the workgroup's chunks, each chunk's padded to 17 units
// (272 bytes) so that the invocations' reads of their own chunk fall in distinct banks.
shared uvec4 stage[WG * 17u];
#endif

void main() {
#if VARIANT == 1
    uint local = gl_LocalInvocationID.x;
    uint c = (gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x) * WG + local;
#else
    uint c = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    if (c >= p.chunks) return;
#endif
    uint len = chunk_len(c);
    uint full = len / 64u, blocks = (len + 63u) / 64u;
    uint q = p.q0 + 64u * c;
    uvec4 h0 = uvec4(IV0, IV1, IV2, IV3), h1 = uvec4(IV4, IV5, IV6, IV7);
    uint flags = CHUNK_START;
#if VARIANT == 1
    uint c0 = c - local;
    for (uint step = 0u; step < 4u; ++step) {
        // The workgroup's loads: 16 per invocation, each warp's covering two chunks' 256 bytes.
        [[unroll]] for (uint j = 0u; j < 16u; ++j) {
            uint u = j * WG + local, lc = u / 16u, k = u % 16u;
            if (64u * (4u * step + k / 4u + 1u) <= chunk_len(c0 + lc))  // a full block of that chunk
                stage[17u * lc + k] = a[p.q0 + 64u * (c0 + lc) + 16u * step + k];
        }
        barrier();
        for (uint i = 0u; i < 4u; ++i) {
            uint b = 4u * step + i, s = 17u * local + 4u * i;
            if (b < full) {
                b3_compress(h0, h1, stage[s], stage[s + 1u], stage[s + 2u], stage[s + 3u], c, 64u,
                            flags | (b + 1u == blocks ? CHUNK_END | p.root : 0u));
                flags = 0u;
            }
        }
        barrier();
    }
    if (c >= p.chunks) return;
    q += 4u * full;
    if (full != blocks) {  // the last block is partial: 1..63 bytes
        uint rem = len - 64u * full;
        b3_compress(h0, h1, load_masked(q, 0u, rem), load_masked(q, 1u, rem), load_masked(q, 2u, rem),
                    load_masked(q, 3u, rem), c, rem, flags | CHUNK_END | p.root);
    }
#else
    for (uint b = 0u; b + 1u < blocks; ++b, q += 4u) {  // every block before the last is full
        b3_compress(h0, h1, a[q], a[q + 1u], a[q + 2u], a[q + 3u], c, 64u, flags);
        flags = 0u;
    }
    uint rem = len - 64u * (blocks - 1u);  // 1..64
    b3_compress(h0, h1, load_masked(q, 0u, rem), load_masked(q, 1u, rem), load_masked(q, 2u, rem),
                load_masked(q, 3u, rem), c, rem, flags | CHUNK_END | p.root);
#endif
    o[2u * c] = h0;
    o[2u * c + 1u] = h1;
}
