"""Builtin reporters, one module per algorithm."""
