"""The version, in a module of its own that anything may import (the package face imports
much more, lazily)."""

__version__ = "0.1.0"
