"""``from pofa_openvino.bundle import Bundle``: the line every bundle's README (its model card) gives its
users, so it keeps working; the bundle code itself is :mod:`pofa_openvino.runtime.bundle`."""

from .runtime.bundle import Bundle, BundleError, extract, verify

__all__ = ["Bundle", "BundleError", "extract", "verify"]
