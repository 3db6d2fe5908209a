#version 450
// c = a + b over n floats; one invocation per element.
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WORKGROUP = 256;

// Bindings mirror BINDING_A/B/C in vector_add.py.
layout(std430, set = 0, binding = 0) readonly buffer A { float a[]; };
layout(std430, set = 0, binding = 1) readonly buffer B { float b[]; };
layout(std430, set = 0, binding = 2) writeonly buffer C { float c[]; };
layout(push_constant) uniform Params { uint n; } params;

void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < params.n) {
        c[i] = a[i] + b[i];
    }
}
