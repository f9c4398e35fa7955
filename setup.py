"""The C parts (tracer loop, trace reader scan, address-space replay); the rest: pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # A plain shared library that tracer/fastloop.py loads with ctypes (no Python API inside).
        Extension("tracer._fastloop", ["tracer/_fastloop.c"], extra_compile_args=["-O2", "-Wall"]),
        # A CPython extension: the trace reader's line scan (tracer/traceformat.py).
        Extension("tracer._lines", ["tracer/_lines.c"], extra_compile_args=["-O2", "-Wall"]),
        # A CPython extension: the address-space replay's data structure (analyzers/addrspace.py).
        Extension(
            "analyzers._addrspace", ["analyzers/_addrspace.c"], extra_compile_args=["-O2", "-Wall"]
        ),
    ]
)
