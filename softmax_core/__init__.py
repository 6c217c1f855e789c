"""Softmax Lab's library: MNIST data, the softmax regression, training, runs, figures.

Importing the package is cheap; TensorFlow loads only with ``model``, ``train`` or ``jobs``.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
