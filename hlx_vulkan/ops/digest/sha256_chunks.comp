#version 450
// SHA-256 (FIPS 180-4) of each CHUNK-byte chunk of A's bytes, one invocation per chunk; the
// last chunk may be shorter. Digest c goes to O's words 8c..8c+7 stored byte-swapped, so O's
// bytes are the digests' bytes: a level's output is the next level's input
// (hlx_vulkan/memory/tree_digest.py defines the tree; ops/digest.py launches the levels).
// Message words are big-endian: each little-endian word read is byte-swapped. The 64 rounds
// are unrolled over a 16-word rolling schedule, so every index is a constant (registers only).
#extension GL_EXT_control_flow_attributes : require

layout(constant_id = 0) const uint WG = 64;
layout(local_size_x_id = 0) in;

// Bindings and push fields are declared in ops/digest.py (checked against this shader).
layout(std430, binding = 0) writeonly buffer O { uint o[]; };
layout(std430, binding = 1) readonly buffer A { uvec4 a[]; };

layout(push_constant) uniform Params {
    uint chunks;   // invocations that hash
    uint chunk;    // bytes per chunk, a multiple of 64
    uint nbytes;   // bytes in all
    uint q0;       // A's first byte, in 16-byte units from the start of the binding
} p;

const uint K[64] = uint[64](
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
    0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
    0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u);

uint rotr(uint x, uint n) { return (x >> n) | (x << (32u - n)); }
uint bswap(uint x) { return (x << 24) | ((x & 0xff00u) << 8) | ((x >> 8) & 0xff00u) | (x >> 24); }

uint W[16];
uint H[8];

void compress() {
    uint a = H[0], b = H[1], c = H[2], d = H[3], e = H[4], f = H[5], g = H[6], h = H[7];
    [[unroll]] for (uint t = 0u; t < 64u; ++t) {
        if (t >= 16u) {
            uint w15 = W[(t - 15u) & 15u], w2 = W[(t - 2u) & 15u];
            uint s0 = rotr(w15, 7u) ^ rotr(w15, 18u) ^ (w15 >> 3);
            uint s1 = rotr(w2, 17u) ^ rotr(w2, 19u) ^ (w2 >> 10);
            W[t & 15u] += s0 + W[(t - 7u) & 15u] + s1;
        }
        uint t1 = h + (rotr(e, 6u) ^ rotr(e, 11u) ^ rotr(e, 25u)) + ((e & f) ^ (~e & g)) + K[t] + W[t & 15u];
        uint t2 = (rotr(a, 2u) ^ rotr(a, 13u) ^ rotr(a, 22u)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    H[0] += a; H[1] += b; H[2] += c; H[3] += d; H[4] += e; H[5] += f; H[6] += g; H[7] += h;
}

void main() {
    uint c = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    if (c >= p.chunks) return;
    uint start = c * p.chunk;
    uint len = min(p.chunk, p.nbytes - start);
    uint q = p.q0 + start / 16u;  // this chunk's first 16 bytes
    H[0] = 0x6a09e667u; H[1] = 0xbb67ae85u; H[2] = 0x3c6ef372u; H[3] = 0xa54ff53au;
    H[4] = 0x510e527fu; H[5] = 0x9b05688cu; H[6] = 0x1f83d9abu; H[7] = 0x5be0cd19u;
    uint full = len / 64u;
    for (uint blk = 0u; blk < full; ++blk, q += 4u) {
        uvec4 v0 = a[q], v1 = a[q + 1u], v2 = a[q + 2u], v3 = a[q + 3u];
        W[0] = bswap(v0.x); W[1] = bswap(v0.y); W[2] = bswap(v0.z); W[3] = bswap(v0.w);
        W[4] = bswap(v1.x); W[5] = bswap(v1.y); W[6] = bswap(v1.z); W[7] = bswap(v1.w);
        W[8] = bswap(v2.x); W[9] = bswap(v2.y); W[10] = bswap(v2.z); W[11] = bswap(v2.w);
        W[12] = bswap(v3.x); W[13] = bswap(v3.y); W[14] = bswap(v3.z); W[15] = bswap(v3.w);
        compress();
    }
    // The tail: rem (0..63) bytes, then 0x80, zeros, and the length in bits (64-bit big-endian)
    // in the last two words, in one block or, when rem > 55, two.
    uint rem = len - full * 64u;
    [[unroll]] for (uint i = 0u; i < 16u; ++i) {
        uint word = 0u;
        if (4u * i < rem) {  // reads only 16-byte units that hold message bytes
            uvec4 v = a[q + i / 4u];
            word = bswap(i % 4u == 0u ? v.x : i % 4u == 1u ? v.y : i % 4u == 2u ? v.z : v.w);
        }
        int valid = int(rem) - int(4u * i);  // message bytes in this word, if in 0..3
        if (valid < 4) {
            uint keep = valid <= 0 ? 0u : 0xffffffffu << (32u - 8u * uint(valid));
            word = (word & keep) | (valid >= 0 ? 0x80u << (24u - 8u * uint(valid)) : 0u);
        }
        W[i] = word;
    }
    if (rem >= 56u) {
        compress();
        [[unroll]] for (uint i = 0u; i < 14u; ++i) W[i] = 0u;
    }
    W[14] = len >> 29;
    W[15] = len << 3;
    compress();
    [[unroll]] for (uint i = 0u; i < 8u; ++i) o[8u * c + i] = bswap(H[i]);
}
