"""Fixtures shared by the root tests."""

from tests.root.upserver import root_server

__all__ = ["root_server"]
