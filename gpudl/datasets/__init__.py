"""Datasets: MNIST, Fashion-MNIST, scikit-learn's 8x8 digits, and the IDX reader.

Importing this package reads and downloads nothing; each ``load_data`` does its work when
called.
"""
from . import digits, fashion_mnist, mnist
from .idx import read_idx

__all__ = ["mnist", "fashion_mnist", "digits", "read_idx"]
