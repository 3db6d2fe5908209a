#version 450
// A learning-rate schedule step on the device: count += 1, then lr from the count.
// KIND 0: step decay, base * gamma^floor(count / period). KIND 1: cosine annealing,
// floor + (base - floor) * (1 + cos(pi * count / period)) / 2.
#extension GL_GOOGLE_include_directive : require
#include "float_controls.glsl"

layout(local_size_x = 1) in;

// Bindings mirror BINDING_* in optim/schedulers.py.
layout(std430, binding = 0) buffer H { float h[]; };  // [lr, step, schedule count, 0]

// Mirrors PUSH_FORMAT in optim/schedulers.py.
layout(push_constant) uniform Params {
    uint off_h;
    float base;
    float period;
    float factor;      // KIND 0: gamma; KIND 1: the floor (eta_min)
} c;

void main() {
    float count = h[c.off_h + 2] + 1.0;
    h[c.off_h + 2] = count;
#if KIND == 0
    h[c.off_h] = c.base * pow(c.factor, floor(HLX_DIV(count, c.period)));
#else
    h[c.off_h] = c.factor + (c.base - c.factor) * 0.5 * (1.0 + cos(HLX_DIV(3.14159265358979 * count, c.period)));
#endif
}
