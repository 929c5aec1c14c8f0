"""The trainer: data, recipes, strategies, callbacks, tuning and the command line."""
