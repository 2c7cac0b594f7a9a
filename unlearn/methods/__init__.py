"""Unlearning methods. Importing this package registers every method module in it (each module
registers its classes with :func:`register_method`; a new method is a new module, nothing else)."""
import importlib
import pkgutil

from unlearn.methods.base import METHODS, Method, MethodContext, build_method, register_method

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METHODS", "Method", "MethodContext", "build_method", "register_method"]
