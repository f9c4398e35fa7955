"""Only the C part of the tracer's hot loop; everything else is declared in pyproject.toml."""

from setuptools import Extension, setup

# A plain shared library that tracer/fastloop.py loads with ctypes (no Python API inside).
setup(
    ext_modules=[
        Extension("tracer._fastloop", ["tracer/_fastloop.c"], extra_compile_args=["-O2", "-Wall"])
    ]
)
