"""The data a run was trained and scored on, as MLflow dataset inputs (the runs table's Dataset column).

One input per split: the dataset root as its source (a local path or an `s3://` URI), `split_digest` as its digest
(it changes when the data does), the split as its context, and the manifest's counts as its profile. A registered
model version points at its run, so it can be traced to the same inputs.
"""

from __future__ import annotations

import json
import warnings
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Sequence

from mlflow.data.dataset import Dataset
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.entities import DatasetInput, InputTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from classemo.data.dataset import split_digest
from classemo.data.format import SPLITS

if TYPE_CHECKING:
    from classemo.data.dataset import DatasetInfo


class SplitDataset(Dataset):
    """One split of a classemo dataset (Parquet clips + manifest.json) as MLflow sees a dataset."""

    def __init__(self, info: DatasetInfo, split: str) -> None:
        self._info, self._split = info, split
        with warnings.catch_warnings():  # two registered local sources match a path; they are the same class
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(info.root)
        super().__init__(source=source, name=PurePosixPath(info.root.rstrip("/")).name or info.root,
                         digest=split_digest(info, split))

    def _compute_digest(self) -> str:
        return split_digest(self._info, self._split)

    @property
    def split(self) -> str:
        return self._split

    @property
    def profile(self) -> dict[str, Any]:
        m = self._info.manifest
        return {"num_clips": m.counts.get(self._split, 0), "num_frames": m.frame_counts.get(self._split),
                "label_counts": m.label_counts.get(self._split, {}), "image_size": m.image_size,
                "source": m.source, "converter": m.converter_version}

    @property
    def schema(self) -> None:
        return None  # the Parquet schema is the documented clip contract (docs/data-format.md)

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "profile": json.dumps(self.profile)}


def log_data_inputs(run_id: str, info: DatasetInfo, splits: Sequence[str] = SPLITS, *,
                    client: MlflowClient | None = None) -> list[SplitDataset]:
    """Log each listed split that holds clips as a dataset input of `run_id`, its context the split's name.

    Returns:
        The logged datasets, in `splits` order.
    """
    datasets = [SplitDataset(info, s) for s in splits if info.manifest.counts.get(s, 0) > 0]
    if datasets:
        (client or MlflowClient()).log_inputs(run_id, datasets=[
            DatasetInput(d._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, d.split)]) for d in datasets])
    return datasets
