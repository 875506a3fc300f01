"""Builtin searchers, one module per algorithm."""
