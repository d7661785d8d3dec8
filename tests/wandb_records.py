"""Read an offline W&B run file (`offline-run-*/run-<id>.wandb`) as `wandb sync` would: the
records W&B wrote, and what they add up to (the run's tags, its final summary, its artifacts).

The file is a LevelDB-style log (wandb 0.31 ships no Python reader of its own): a 7-byte header
(':W&B', 0xBEE1, version), then 32 KiB blocks of chunks, each with a 7-byte header (CRC-32,
length, kind: 1 whole, 2 first, 3 middle, 4 last); a chunk never crosses a block, and a block's
tail shorter than a header is padding. Each assembled record is a `wandb_internal_pb2.Record`.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

BLOCK = 32 * 1024
HEADER = struct.Struct("<IHB")  # CRC-32, length, kind


def records(path: Path) -> list:
    """Every record of one run file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    out, pending, pos = [], b"", 7
    while pos + HEADER.size <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER.size:  # padding at the end of a block
            pos += left
            continue
        _crc, length, kind = HEADER.unpack_from(data, pos)
        pending += data[pos + HEADER.size : pos + HEADER.size + length]
        pos += HEADER.size + length
        if kind in (1, 4):  # a whole record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
        elif kind == 0:  # zeroed tail of a block that was never written
            pending = b""
    return out


@dataclass
class OfflineRun:
    """What one offline run file says about its run."""

    run_id: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)  # the final summary (nested keys as dicts)
    history_keys: set[str] = field(default_factory=set)
    metrics: dict = field(default_factory=dict)  # name (or glob) -> its MetricRecord
    artifacts: list = field(default_factory=list)  # ArtifactRecords (logged or used)


def read_run(path: Path) -> OfflineRun:
    """Replay one run file's records into the run they describe."""
    run = OfflineRun()
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run_id, run.job_type = record.run.run_id, record.run.job_type
            run.tags = list(record.run.tags)
            _apply(run.config, record.run.config.update)
        elif kind == "config":
            _apply(run.config, record.config.update)
        elif kind == "summary":
            _apply(run.summary, record.summary.update)
        elif kind == "history":
            run.history_keys |= {_path(item)[0] for item in record.history.item}
        elif kind == "metric":
            run.metrics[record.metric.name or record.metric.glob_name] = record.metric
        elif kind == "artifact":
            run.artifacts.append(record.artifact)
    return run


def read_runs(folder: Path) -> list[OfflineRun]:
    """Every offline run file under `folder` (a run resumed offline has one per attempt)."""
    return [read_run(path) for path in sorted(Path(folder).rglob("offline-run-*/run-*.wandb"))]


def _path(item) -> list[str]:
    return list(item.nested_key) or [item.key]


def _apply(target: dict, updates) -> None:
    for item in updates:
        *parents, last = _path(item)
        node = target
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = json.loads(item.value_json)
