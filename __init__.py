"""seedchip: an open generator for a recommendation-inference accelerator."""

__version__ = "0.1.0"
