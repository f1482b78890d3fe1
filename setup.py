"""Declares the compiled kernels of poe._core; all metadata lives in pyproject.toml.

Release builds (the default) carry no debug information: compiled with -g0 and linked with
-s (stripped), which makes the kernels about six times smaller (codec: 4.8 MB -> 0.7 MB).

Environment switches (for development only):
  POE_DEBUG_BUILD=1  keep the debug information (-O3 -g, not stripped): gdb, perf, valgrind
  POE_DEBUG=1        annotate (.html beside each .pyx), line tracing, bounds/wrap checks,
                     -O0 -g3 (implies POE_DEBUG_BUILD=1)
  POE_ONLY=a,b       build only the named kernels (e.g. POE_ONLY=kv) while another is broken
"""
import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

KERNELS = ["codec", "digest", "window", "kv"]

def _switch(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


debug = _switch("POE_DEBUG")
debug_info = debug or _switch("POE_DEBUG_BUILD")
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
link_args: list[str] = []
if sys.platform != "win32":
    compile_args.append("-Wno-unused-function")
    if debug_info:
        compile_args.append("-g")
    else:
        # after the interpreter's own CFLAGS (which carry -g): the last -g option wins
        compile_args.append("-g0")
        if sys.platform.startswith("linux"):
            link_args.append("-s")          # strip the symbol table too (GNU ld)

extensions = [
    Extension(
        f"poe._core.{name}",
        [f"poe/_core/{name}.pyx"],
        depends=[f"poe/_core/{name}.pxd", "poe/_core/sha256.h"],
        include_dirs=["poe/_core"],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
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
