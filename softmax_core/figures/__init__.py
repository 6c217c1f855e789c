"""Plotly figures of Softmax Lab: training curves (``curves``) and digit images (``digits``).

Figures are built from plain arrays and metrics, so pages, tests and scripts share them.
"""
