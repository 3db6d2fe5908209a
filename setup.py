"""The one C extension (hlx_vulkan/vk/_record.c: the dispatch hot path). Optional: without a C
compiler the install still succeeds and the library records through cffi instead."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("hlx_vulkan.vk._record", ["hlx_vulkan/vk/_record.c"], optional=True)])
