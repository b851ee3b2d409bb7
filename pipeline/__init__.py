"""video-pipeline: long videos through a short-video recognition API, back as one timeline."""

__version__ = "0.1.0"
