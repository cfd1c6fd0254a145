"""cover-id: tell which item of a reference collection a photo shows."""

__version__ = "0.1.0"
