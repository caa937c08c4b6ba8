"""Multi-label image classification with label-graph models: the pipeline from data to endpoint."""

__version__ = "0.1.0"
