#version 450
// One optimizer step for one parameter tensor, elementwise: SGD (RULE 0, with MOMENTUM a
// momentum buffer M) or Adam/AdamW (RULE 1, with moments M and V). The learning rate and the
// step count are read from the optimizer's device state H, so a recorded step replays with
// the current values and no host round trip. With VEC each thread updates four elements
// (16-byte loads and stores; n a multiple of 4 and every offset too), the same arithmetic
// component by component, so the same bits.
#extension GL_GOOGLE_include_directive : require
#include "float_controls.glsl"

layout(local_size_x_id = 0) in;

#if VEC
#define T vec4
#define Q 2u
#else
#define T float
#define Q 0u
#endif

// Bindings and push fields are declared in optim/optimizers.py (checked against this shader).
layout(std430, binding = 0) buffer P { T p[]; };
layout(std430, binding = 1) readonly buffer G { T g[]; };
layout(std430, binding = 2) readonly buffer H { float h[]; };  // [lr, step, schedule count, 0]
#if RULE == 1 || MOMENTUM
layout(std430, binding = 3) buffer M { T m[]; };
#endif
#if RULE == 1
layout(std430, binding = 4) buffer V { T v[]; };
#endif

layout(push_constant) uniform Params {
    uint n;
    uint off_p, off_m, off_v, off_g, off_h;
    float beta1;       // Adam; SGD: momentum
    float beta2;       // Adam; SGD: dampening
    float eps;
    float weight_decay;
    uint flags;        // bit 0: nesterov (SGD) or decoupled weight decay (AdamW)
} c;

void main() {
    uint i = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    if (i >= (c.n >> Q)) return;
    float lr = h[c.off_h];
    float t = h[c.off_h + 1];
    uint ip = (c.off_p >> Q) + i;
    T w = p[ip];
    T grad = g[(c.off_g >> Q) + i];
#if RULE == 0
    grad += c.weight_decay * w;
#if MOMENTUM
    uint im = (c.off_m >> Q) + i;
    T buf = t == 1.0 ? grad : c.beta1 * m[im] + (1.0 - c.beta2) * grad;
    m[im] = buf;
    grad = (c.flags & 1u) != 0u ? grad + c.beta1 * buf : buf;
#endif
    p[ip] = w - lr * grad;
#else
    if ((c.flags & 1u) != 0u) {
        w *= 1.0 - lr * c.weight_decay;
    } else {
        grad += c.weight_decay * w;
    }
    uint im = (c.off_m >> Q) + i, iv = (c.off_v >> Q) + i;
    T mi = c.beta1 * m[im] + (1.0 - c.beta1) * grad;
    T vi = c.beta2 * v[iv] + (1.0 - c.beta2) * grad * grad;
    m[im] = mi;
    v[iv] = vi;
    float bc1 = 1.0 - pow(c.beta1, t);
    float bc2 = 1.0 - pow(c.beta2, t);
    T denom = HLX_DIV(sqrt(vi), sqrt(bc2)) + c.eps;
    p[ip] = w - HLX_DIV(lr, bc1) * HLX_DIV(mi, denom);
#endif
}
