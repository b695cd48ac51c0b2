"""Session-wide test settings: nothing the tests run writes outside their temporary folders."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_embedding_cache(tmp_path_factory: pytest.TempPathFactory):
    """QPU embeddings persist on disk (``$QSGD_CACHE_DIR``): keep the tests' cache private.

    Subprocesses started by tests inherit the variable. A test that sets its own cache folder
    (``monkeypatch.setenv``) still wins.
    """
    previous = os.environ.get("QSGD_CACHE_DIR")
    os.environ["QSGD_CACHE_DIR"] = str(tmp_path_factory.mktemp("qsgd-cache"))
    yield
    if previous is None:
        os.environ.pop("QSGD_CACHE_DIR", None)
    else:
        os.environ["QSGD_CACHE_DIR"] = previous
