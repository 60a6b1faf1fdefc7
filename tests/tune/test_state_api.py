"""A search on a Ray whose workers cannot reach the state API stops before any trial, instead of hanging later."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import TINY_SEARCH
from tune.config import SearchError, load_tune_config
from tune.search import run_search

pytestmark = [pytest.mark.ray]


def test_search_without_state_api_is_a_clear_error(ray_cluster, mlflow_uri: str, tiny_dataset: Path,
                                                   tmp_path: Path) -> None:
    # `ray_cluster` starts Ray without its dashboard, so Ray Train's PlacementGroupCleaner would be blind there.
    tc = load_tune_config(None, [*TINY_SEARCH, f"job.data.root={tiny_dataset}", "search.name=blind",
                                 f"search.storage_path={tmp_path / 'tune'}"])
    with pytest.raises(SearchError, match="state API is not reachable"):
        run_search(tc)
    assert not (tmp_path / "tune" / "blind").exists()  # nothing was started or recorded
