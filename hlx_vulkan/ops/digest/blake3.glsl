// BLAKE3's compression function (https://github.com/BLAKE3-team/BLAKE3-specs), 32-bit integer
// operations only: every state and message word is a scalar named once, and the message
// permutation is spelled out per round, so every index is a constant (registers only).

const uint IV0 = 0x6a09e667u, IV1 = 0xbb67ae85u, IV2 = 0x3c6ef372u, IV3 = 0xa54ff53au;
const uint IV4 = 0x510e527fu, IV5 = 0x9b05688cu, IV6 = 0x1f83d9abu, IV7 = 0x5be0cd19u;
const uint CHUNK_START = 1u, CHUNK_END = 2u, PARENT = 4u, ROOT = 8u;

#define B3_ROTR(x, n) (((x) >> (n)) | ((x) << (32u - (n))))
#define B3_G(a, b, c, d, x, y) \
    a = a + b + x; d = B3_ROTR(d ^ a, 16u); c = c + d; b = B3_ROTR(b ^ c, 12u); \
    a = a + b + y; d = B3_ROTR(d ^ a, 8u);  c = c + d; b = B3_ROTR(b ^ c, 7u);
#define B3_ROUND(s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15) \
    B3_G(v0, v4, v8, v12, m##s0, m##s1)   B3_G(v1, v5, v9, v13, m##s2, m##s3) \
    B3_G(v2, v6, v10, v14, m##s4, m##s5)  B3_G(v3, v7, v11, v15, m##s6, m##s7) \
    B3_G(v0, v5, v10, v15, m##s8, m##s9)  B3_G(v1, v6, v11, v12, m##s10, m##s11) \
    B3_G(v2, v7, v8, v13, m##s12, m##s13) B3_G(v3, v4, v9, v14, m##s14, m##s15)

// The chaining value (h0, h1) after one 64-byte block (w0..w3, little-endian words) with the
// 64-bit counter (counter, 0), block_len bytes and flags: the output's first 8 words.
void b3_compress(inout uvec4 h0, inout uvec4 h1, uvec4 w0, uvec4 w1, uvec4 w2, uvec4 w3,
                 uint counter, uint block_len, uint flags) {
    uint m0 = w0.x, m1 = w0.y, m2 = w0.z, m3 = w0.w, m4 = w1.x, m5 = w1.y, m6 = w1.z, m7 = w1.w;
    uint m8 = w2.x, m9 = w2.y, m10 = w2.z, m11 = w2.w, m12 = w3.x, m13 = w3.y, m14 = w3.z, m15 = w3.w;
    uint v0 = h0.x, v1 = h0.y, v2 = h0.z, v3 = h0.w, v4 = h1.x, v5 = h1.y, v6 = h1.z, v7 = h1.w;
    uint v8 = IV0, v9 = IV1, v10 = IV2, v11 = IV3, v12 = counter, v13 = 0u, v14 = block_len, v15 = flags;
    B3_ROUND(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
    B3_ROUND(2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8)
    B3_ROUND(3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1)
    B3_ROUND(10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6)
    B3_ROUND(12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4)
    B3_ROUND(9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7)
    B3_ROUND(11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13)
    h0 = uvec4(v0 ^ v8, v1 ^ v9, v2 ^ v10, v3 ^ v11);
    h1 = uvec4(v4 ^ v12, v5 ^ v13, v6 ^ v14, v7 ^ v15);
}
