"""Every poe._core kernel must be the compiled extension, never a silent fallback."""
import importlib
import importlib.machinery

import pytest

import poe._core


@pytest.mark.parametrize("name", poe._core.KERNELS)
def test_kernel_is_compiled_extension(name):
    module = importlib.import_module(f"poe._core.{name}")
    path = module.__file__
    assert path is not None
    assert any(path.endswith(suffix) for suffix in importlib.machinery.EXTENSION_SUFFIXES), path
    assert isinstance(module.__loader__, importlib.machinery.ExtensionFileLoader)


def test_kernel_list_matches_package_contents():
    import pkgutil

    found = {m.name for m in pkgutil.iter_modules(poe._core.__path__)}
    assert set(poe._core.KERNELS) <= found
