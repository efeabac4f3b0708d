"""Datasets a project uploads: reading files row by row within limits (streaming, parsing,
cells), mapping their columns onto the roles of a prompt or preference dataset (mapping), and
storing files by content (storage)."""
