// Split-K in one dispatch (SPLIT 2; ops/matmul.py): every chunk's workgroup stores its float32
// partial in P, as the two-pass split does; the last of a tile's workgroups to finish, elected by
// an integer count a tile in C, adds the tile's partials in chunk order, as matmul_splitk.comp
// would, and stores the output. The same partials, added in the same order: the same bits. No
// second dispatch and no barrier between two. The elected workgroup reads the partials chunk by
// chunk, every load of a chunk in flight at once: element by element, each element's chunks one
// after another, the loads waited on each other, and on an H100 the split became slower than in
// two dispatches (4096^3 float32 41.8 against 43.4 TFLOP/s).
// P and C are bound after the kernel's three buffers and the bias (binding 3, where BIAS is 1);
// push fields off_p and off_c place them. The election's result reaches the workgroup through
// ELECT_FLAG, an element (of type ELECT_T) of the kernel's shared tiles, free once the product
// is made: a shared word of its own would push the tiles that fill 48 KiB past the limit. Include
// this after the push block and the shared tiles.
#if SPLIT == 2
#if BIAS
#define P_BINDING 4
#define C_BINDING 5
#else
#define P_BINDING 3
#define C_BINDING 4
#endif
layout(std430, binding = P_BINDING) coherent buffer P { vec4 part[]; };
layout(std430, binding = C_BINDING) coherent buffer C { uint cnt[]; };

// Whether this workgroup is the last of the ``chunks`` on tile ``slot`` to finish, after every
// thread has stored its partials (and is done with the shared tiles). The last one sets the count
// back to zero for the next dispatch (every other chunk of the tile has counted by then).
// Workgroup-uniform.
bool last_of_tile(uint slot, uint chunks) {
    memoryBarrierBuffer();  // this thread's partials are visible before the count says so
    barrier();
    if (gl_LocalInvocationIndex == 0u) {
        bool elected = atomicAdd(cnt[p.off_c + slot], 1u) == chunks - 1u;
        if (elected) cnt[p.off_c + slot] = 0u;
        ELECT_FLAG = ELECT_T(elected ? 1 : 0);
    }
    barrier();
    bool last = ELECT_FLAG != ELECT_T(0);
    memoryBarrierBuffer();
    return last;
}

float part_at(uint i) { return part[i >> 2][i & 3u]; }
void set_part(uint i, float v) { part[i >> 2][i & 3u] = v; }
#endif
