"""Backends of the engine: where a group's buffers live and how its kernels run.

``cpu`` compiles fast/kernels/cpu_driver.cpp with the system C++ compiler and
calls it through ctypes; ``cuda`` instantiates the same update math through
CuPy's NVRTC (unverified: no GPU was available while it was written).
"""
