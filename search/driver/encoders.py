"""Where the later stages' encoder comes from (`search.pretrain.source`), and the store that
lets a second study reuse a pretrained encoder instead of pretraining it again.

Sources:
- `synthetic`: supervised on generated HC18-like images (`synthetic_images`, `epochs`);
- `self_supervised`: the target data's own training images (its train split only; labels are
  never read), restored from corrupted copies (`pretext`, `pretext_epochs`);
- a folder: in the HC18 layout, supervised on its labels; any other folder of images,
  self-supervised on them;
- `imagenet`: segmentation-models-pytorch's ImageNet weights (nothing trains here);
- a checkpoint file (`.pt`): its encoder (nothing trains here).

A trained encoder is stored under a key made of the source (its content: the target data's
fingerprint, the folder's file digests, the generator's size and seed), the encoder and the
settings that shape training; the store is `search.pretrain.store` (default
`<storage>/pretrained`, beside the experiments).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from search.driver.config import PRETRAIN_DATA, ResolvedConfig
from search.experiment.folder import Experiment, stored_encoder_files
from search.experiment.storage import ExperimentStore, folder_digest, is_uri
from search.shared.spec import PRETRAINED
from trainables.core.errors import ConfigError
from trainables.data.arrays import digest_of
from trainables.data.hc18_files import SUBSET_CSV
from trainables.data.trial_data import load_trial_data
from trainables.nets.freeze import BASELINE
from trainables.nets.strategies import get_strategy

KEY_VERSION = 1
# Trial settings that do not change what an encoder learns (where and how fast it runs).
EXECUTION_KEYS = (
    "device",
    "amp",
    "channels_last",
    "compile",
    "num_threads",
    "eval_batch_size",
    "checkpoint_every",
    "cache_dir",
    "data_dir",
    "augment_backend",
)


def networks(cfg: ResolvedConfig) -> list[str]:
    """The networks (smp encoders) whose encoder weights the study's trials take."""
    search = cfg.search
    found = [get_strategy(s).network for s in search.strategies]
    if "explore" in search.stages:
        found += search.explore.encoders
    found += [get_strategy(c.strategy).network for c in search.final_configs]
    return [n for n in dict.fromkeys(found) if n != BASELINE]


def later_encoder_weights(cfg: ResolvedConfig, experiment: Experiment, resume: bool) -> str:
    """The encoder weights of a study that does not run its pretrain stage now: on a resume,
    what the first run's pretrain stage left (its encoders, or ImageNet for that source), else
    the trial config's own."""
    if resume and experiment.pretrained_networks():
        return PRETRAINED
    saved = experiment.read_config().get("search", {}) if resume else {}
    if (
        "pretrain" in saved.get("stages", [])
        and saved.get("pretrain", {}).get("source") == "imagenet"
    ):
        return "imagenet"
    return cfg.trial.encoder_weights


def needs_imagenet(cfg: ResolvedConfig, experiment: Experiment, resume: bool) -> bool:
    """Whether the study's trials take ImageNet weights (fetched once, before Ray starts)."""
    if "pretrain" in cfg.search.stages:
        return source_kind(cfg.search.pretrain.source) == "imagenet"
    return later_encoder_weights(cfg, experiment, resume) == "imagenet"


def source_kind(source: str) -> str:
    """The kind of a `search.pretrain.source` value (ConfigError for one that is none)."""
    if source in ("synthetic", "self_supervised", "imagenet"):
        return source
    path = Path(source)
    if path.is_dir():
        return "hc18_folder" if (path / SUBSET_CSV["training_set"]).is_file() else "image_folder"
    if path.is_file() and path.suffix == ".pt":
        return "checkpoint"
    raise ConfigError(
        f"search.pretrain.source: {source!r} is none of 'synthetic', 'self_supervised', "
        "'imagenet', a folder (HC18 layout, or images) or a checkpoint file (.pt)"
    )


def describe(cfg: ResolvedConfig, images: int | None = None) -> str:
    """One line a reader (report, W&B) understands: where the encoder came from."""
    settings = cfg.search.pretrain
    kind = source_kind(settings.source)
    count = f"{images} " if images else ""
    return {
        "synthetic": f"supervised on {settings.synthetic_images} synthetic HC18-like images, "
        f"{settings.epochs} epochs",
        "self_supervised": f"self-supervised ({settings.pretext}) on the {count}training images "
        f"of the target data, {settings.pretext_epochs} epochs",
        "hc18_folder": f"supervised on the labelled images of {settings.source}, "
        f"{settings.epochs} epochs",
        "image_folder": f"self-supervised ({settings.pretext}) on the {count}images of "
        f"{settings.source}, {settings.pretext_epochs} epochs",
        "imagenet": "ImageNet (segmentation-models-pytorch's weights)",
        "checkpoint": f"the checkpoint {settings.source}",
    }[kind]


def encoder_key(cfg: ResolvedConfig, trial_values: dict, data_digest: str | None) -> str:
    """The store key of the encoder a pretrain trial with these settings trains."""
    settings = cfg.search.pretrain
    kind = source_kind(settings.source)
    source: dict = {"kind": kind}
    if kind == "synthetic":
        source |= {"images": settings.synthetic_images, "seed": 0}
    elif kind == "self_supervised":
        source |= {"data": data_digest, "pretext": settings.pretext}
    elif kind == "image_folder":
        source |= {"files": folder_digest(settings.source), "pretext": settings.pretext}
    elif kind == "hc18_folder":
        values = {**cfg.trial.model_dump(), "data_dir": settings.source, **PRETRAIN_DATA}
        source |= {"data": load_trial_data(type(cfg.trial)(**values)).digest()}
    trial = {k: v for k, v in trial_values.items() if k not in EXECUTION_KEYS}
    return digest_of([KEY_VERSION, source, trial])


# The default reuse store's folder beside the experiments: no experiment may take its name.
DEFAULT_STORE = "pretrained"


@dataclass
class EncoderStore:
    """Pretrained encoders kept for reuse: `<store>/<key>/` holds the experiment's two
    pretrain files of one network (the checkpoint and its description)."""

    store: ExperimentStore

    @classmethod
    def for_study(cls, cfg: ResolvedConfig, experiment: Experiment) -> EncoderStore | None:
        """`search.pretrain.store`, else `pretrained/` beside the experiment; None = 'none'."""
        location = cfg.search.pretrain.store
        if location == "none":
            return None
        if location is None:
            return cls(ExperimentStore(experiment.store.storage, DEFAULT_STORE))
        if not is_uri(location):
            location = str(Path(location).expanduser().resolve())
        parent, _, name = location.rstrip("/").rpartition("/")
        if not parent or (is_uri(location) and not is_uri(parent)):
            raise ConfigError(f"search.pretrain.store: {location}: name a folder, not a root")
        return cls(ExperimentStore(parent, name))

    def has(self, key: str) -> bool:
        return self.store.exists(stored_encoder_files(key)[1])

    def fetch(self, key: str, experiment: Experiment, network: str) -> dict:
        """Copy the stored encoder into the experiment; returns its description."""
        checkpoint, description = stored_encoder_files(key)
        weights = self.store.read_bytes(checkpoint)
        experiment.store.write_bytes(experiment.pretrain_encoder(network), weights)
        info = json.loads(self.store.read_text(description))
        info["reused_from"] = self.store.uri_of(key)
        experiment.write_encoder_info(network, info)
        return info

    def put(self, key: str, experiment: Experiment, network: str) -> None:
        """Keep the experiment's freshly trained encoder for later studies (description last:
        a reader who finds it finds the checkpoint too)."""
        checkpoint, description = stored_encoder_files(key)
        weights = experiment.store.read_bytes(experiment.pretrain_encoder(network))
        self.store.write_bytes(checkpoint, weights)
        self.store.write_bytes(
            description, experiment.store.read_bytes(experiment.pretrain_info(network))
        )


def encoder_info(cfg: ResolvedConfig, key: str | None, result: dict | None) -> dict:
    # `result`: the pretrain trial's stored metrics (None when nothing trained here).
    """The description written beside the encoder (`pretrain/<network>.json`; `encoder.json` in
    the reuse store)."""
    result = result or {}
    images = result.get("pretext_images") or result.get("split_sizes", {}).get("train")
    return {
        "source": cfg.search.pretrain.source,
        "kind": source_kind(cfg.search.pretrain.source),
        "description": describe(cfg, images),
        "key": key,
        "wall_s": result.get("wall_s"),
        "epochs": result.get("epochs"),
        "images": images,
        "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "reused_from": None,
    }
