"""Factorisations computed once and reused: the :class:`Factor` protocol and its implementations."""

from ._base import Factor, LogDet

__all__ = ["Factor", "LogDet"]
