"""Unlearning methods. Importing this package registers every method module in it."""
from unlearn.methods import (  # noqa: F401  (registration side effects)
    cagrad, ga, gdiff, idk, idk_dpo, imtlg, kl, mgda, ngdiff, npo, pcgrad, simnpo,
)
from unlearn.methods.base import METHODS, Method, MethodContext, build_method, register_method

__all__ = ["METHODS", "Method", "MethodContext", "build_method", "register_method"]
