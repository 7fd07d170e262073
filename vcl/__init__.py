"""vcl: composable command-line tools for unsupervised representation learning from video."""

__version__ = "0.1.0"
