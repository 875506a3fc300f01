"""The Re-ID domain: data, models, training engine, evaluation (uses torch)."""
