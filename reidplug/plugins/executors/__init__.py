"""Builtin executors, one module per algorithm."""
