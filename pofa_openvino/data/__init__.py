"""Task data: classification now; question answering joins with its own module."""

from .classification import ClassificationData, Example, load_classification

__all__ = ["ClassificationData", "Example", "load_classification"]
