"""halo-forge: train code models with compiler- and test-verified rewards."""

__version__ = "0.1.0"
