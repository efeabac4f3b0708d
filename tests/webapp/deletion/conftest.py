"""Deletions remove dataset files: each test gets a store of its own, as the datasets tests do."""

from tests.webapp.datasets.conftest import dataset_dir  # noqa: F401  (an autouse fixture)
