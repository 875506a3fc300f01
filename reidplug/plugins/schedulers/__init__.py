"""Builtin schedulers, one module per algorithm."""
