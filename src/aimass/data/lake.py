"""Reading the lake: a clean partition is a folder of Parquet files written by the clean job."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as pads

from aimass.platform.errors import ConfigError


def open_partition(partition: Path) -> pads.Dataset:
    """The partition's Parquet files as one Arrow dataset, in a stable (sorted) file order.

    Hidden and underscore files and folders (``_SUCCESS``, staging folders) are skipped. A sorted
    file list keeps the row order identical for every reader, which multi-worker DATA sharding
    relies on (each worker keeps every N-th batch of the same stream).

    Raises:
        ConfigError: the folder does not exist or holds no Parquet files.
    """
    partition = Path(partition)
    if not partition.is_dir():
        raise ConfigError(
            f"clean partition {partition} does not exist or is not a folder; "
            "run the clean stage for this date first or pass the right partition path"
        )
    files = [str(p) for p in partition_files(partition)]
    if not files:
        raise ConfigError(
            f"clean partition {partition} holds no .parquet files; rerun the clean stage for it"
        )
    return pads.dataset(files, format="parquet")


def partition_files(partition: Path) -> list[Path]:
    """The partition's Parquet files, sorted, without hidden or underscore files and folders
    (``_SUCCESS``, a writer's ``_temporary`` staging); empty when the folder is missing."""
    partition = Path(partition)
    return sorted(
        p
        for p in partition.rglob("*.parquet")
        if p.is_file()
        and not any(part.startswith((".", "_")) for part in p.relative_to(partition).parts)
    )
