"""Declares the compiled kernels of poe._core; all metadata lives in pyproject.toml.

Environment switches (for development only):
  POE_DEBUG=1     annotate (.html beside each .pyx), line tracing, bounds/wrap checks, -O0 -g
  POE_ONLY=a,b    build only the named kernels (e.g. POE_ONLY=kv) while another one is broken
"""
import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

KERNELS = ["codec", "digest", "window", "kv"]

debug = os.environ.get("POE_DEBUG", "") not in ("", "0")
only = [name for name in os.environ.get("POE_ONLY", "").split(",") if name]
unknown = set(only) - set(KERNELS)
if unknown:
    sys.exit(f"setup.py: POE_ONLY names unknown kernels {sorted(unknown)}; known: {KERNELS}")

if debug:
    compile_args = ["-O0", "-g3"]
    macros = [("CYTHON_TRACE_NOGIL", "1")]
else:
    compile_args = ["-O3", "-fno-strict-aliasing"]
    macros = [("NDEBUG", None)]
if sys.platform != "win32":
    compile_args.append("-Wno-unused-function")

extensions = [
    Extension(
        f"poe._core.{name}",
        [f"poe/_core/{name}.pyx"],
        depends=[f"poe/_core/{name}.pxd", "poe/_core/sha256.h"],
        include_dirs=["poe/_core"],
        extra_compile_args=compile_args,
        define_macros=macros,
    )
    for name in (only or KERNELS)
]

directives = {
    "language_level": 3,
    "boundscheck": debug,
    "wraparound": debug,
    "initializedcheck": debug,
    "cdivision": True,
    "embedsignature": True,
    "linetrace": debug,
    "profile": debug,
}

setup(ext_modules=cythonize(extensions, compiler_directives=directives, annotate=debug))
