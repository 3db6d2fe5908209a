"""VkInstance, with the validation layer and a debug messenger when asked."""

from __future__ import annotations

import vulkan as vkb

from .. import errors
from . import validation
from .api import api_version, call
from .handles import Owner


def loader_version() -> int:
    try:
        return vkb.vkEnumerateInstanceVersion()
    except Exception:  # noqa: BLE001 - a 1.0 loader lacks the call
        return api_version(1, 0)


def available_layers() -> list[str]:
    return [p.layerName for p in call(vkb.vkEnumerateInstanceLayerProperties)]


def available_instance_extensions() -> list[str]:
    return [p.extensionName for p in call(vkb.vkEnumerateInstanceExtensionProperties, None)]


def _destroy_instance(handle, messenger, destroy_messenger) -> None:
    if messenger is not None:
        destroy_messenger(handle, messenger, None)
    vkb.vkDestroyInstance(handle, None)


class Instance(Owner):
    """A VkInstance at API 1.3 where the loader has it, else 1.2.

    Example::

        inst = Instance(enable_validation=True)
        print(inst.api_version, inst.validation)
    """

    def __init__(self, enable_validation: bool = False, app_name: str = "hlx_vulkan"):
        loader = loader_version()
        if loader < api_version(1, 2):
            raise errors.FeatureNotPresentError(
                "vkEnumerateInstanceVersion", "VK_ERROR_INCOMPATIBLE_DRIVER",
                f"the Vulkan loader is {loader >> 22}.{(loader >> 12) & 0x3FF}; hlx_vulkan needs 1.2 or newer",
            )
        self.api_version = api_version(1, 3) if loader >= api_version(1, 3) else api_version(1, 2)
        layers, extensions = [], []
        if enable_validation:
            missing = [n for n, ok in ((validation.LAYER, validation.LAYER in available_layers()),
                                       ("VK_EXT_debug_utils", "VK_EXT_debug_utils" in available_instance_extensions())) if not ok]
            if missing:
                raise errors.FeatureNotPresentError(
                    "vkCreateInstance", "VK_ERROR_LAYER_NOT_PRESENT",
                    f"validation was requested but {', '.join(missing)} is not installed "
                    "(Debian: apt-get install vulkan-validationlayers)",
                )
            layers.append(validation.LAYER)
            extensions.append("VK_EXT_debug_utils")
        if "VK_KHR_portability_enumeration" in available_instance_extensions():
            extensions.append("VK_KHR_portability_enumeration")
            flags = vkb.VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR
        else:
            flags = 0
        app = vkb.VkApplicationInfo(
            pApplicationName=app_name, applicationVersion=1, pEngineName="hlx_vulkan",
            engineVersion=1, apiVersion=self.api_version,
        )
        info = vkb.VkInstanceCreateInfo(
            flags=flags, pApplicationInfo=app,
            ppEnabledLayerNames=layers, ppEnabledExtensionNames=extensions,
            # Chained so that messages from vkCreateInstance itself are caught too; synchronization
            # validation on, so a missing or misplaced barrier is an error like any other.
            pNext=validation.messenger_create_info(vkb.VkValidationFeaturesEXT(
                enabledValidationFeatureCount=1,
                pEnabledValidationFeatures=[vkb.VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT]))
            if enable_validation else None,
        )
        self.handle = call(vkb.vkCreateInstance, info, None)
        self.validation = enable_validation
        messenger = destroy_messenger = None
        if enable_validation:
            create = vkb.vkGetInstanceProcAddr(self.handle, "vkCreateDebugUtilsMessengerEXT")
            destroy_messenger = vkb.vkGetInstanceProcAddr(self.handle, "vkDestroyDebugUtilsMessengerEXT")
            messenger = call(create, self.handle, validation.messenger_create_info(), None)
        self._init_children()
        self._own(None, _destroy_instance, self.handle, messenger, destroy_messenger)

    def physical_devices(self) -> list:
        self._check_alive()
        return list(call(vkb.vkEnumeratePhysicalDevices, self.handle))

    def destroy(self) -> None:
        failure = self._destroy_children()
        super().destroy()
        if failure is not None:
            raise failure
