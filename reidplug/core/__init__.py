"""The framework: plugins, config, search spaces and the experiment loop. No torch here."""
