"""Unlearning methods. Importing this package registers every method module in it."""
from unlearn.methods import ga, gdiff, ngdiff  # noqa: F401  (registration side effects)
from unlearn.methods.base import METHODS, Method, MethodContext, build_method, register_method

__all__ = ["METHODS", "Method", "MethodContext", "build_method", "register_method"]
