// SPIR-V float-controls execution modes, declared through GL_EXT_spirv_intrinsics.
// The runtime defines the HLX_FC_* macros that the device supports
// (VkPhysicalDeviceFloatControlsProperties); each kernel includes this file once.
#ifndef HLX_FLOAT_CONTROLS_GLSL
#define HLX_FLOAT_CONTROLS_GLSL
#extension GL_EXT_spirv_intrinsics : require

// Execution modes 4459..4462 and capabilities 4464..4467 are from SPV_KHR_float_controls,
// core in SPIR-V 1.4 (Vulkan 1.2 targets SPIR-V 1.5, so no OpExtension is needed).
#ifdef HLX_FC_RTE_32
spirv_execution_mode(capabilities = [4467], 4462, 32);      // RoundingModeRTE, fp32
#endif
#ifdef HLX_FC_RTE_16
spirv_execution_mode(capabilities = [4467], 4462, 16);      // RoundingModeRTE, fp16
#endif
#ifdef HLX_FC_PRESERVE_32
spirv_execution_mode(capabilities = [4466], 4461, 32);      // SignedZeroInfNanPreserve, fp32
#endif
#ifdef HLX_FC_PRESERVE_16
spirv_execution_mode(capabilities = [4466], 4461, 16);      // SignedZeroInfNanPreserve, fp16
#endif
#ifdef HLX_FC_DENORM_PRESERVE_32
spirv_execution_mode(capabilities = [4464], 4459, 32);      // DenormPreserve, fp32
#endif
#ifdef HLX_FC_DENORM_FLUSH_32
spirv_execution_mode(capabilities = [4465], 4460, 32);      // DenormFlushToZero, fp32
#endif

// Division as a kernel writes it: the device's OpFDiv, or strict.glsl's software form.
#ifdef HLX_STRICT
#include "strict.glsl"
#else
#define HLX_DIV(a, b) ((a) / (b))
#endif

#endif
