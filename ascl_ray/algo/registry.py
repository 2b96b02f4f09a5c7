"""Kept for old imports: the registry lives in :mod:`ascl_ray.registry` (one class for every plug-in point)."""

from ascl_ray.registry import Registry, UnknownNameError, import_plugins, resolve_dotted  # noqa: F401

__all__ = ["Registry", "UnknownNameError", "import_plugins", "resolve_dotted"]
