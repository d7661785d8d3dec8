"""Stage 1 (optional): an encoder for the later stages from a source domain - transfer learning
where ImageNet weights cannot be downloaded (`search.driver.encoders` lists the sources).

One encoder per network the study trains (the named strategies' MobileNetV2, the explore
stage's encoders), all in one Tune experiment. Each is trained once per key (source content,
network, settings): an encoder in the store (`search.pretrain.store`) is copied into the
experiment instead of trained again, and a freshly trained one is put there for later studies.
Its description and cost go to `pretrain/<network>.json`, which the report and W&B show.
"""

from __future__ import annotations

from pathlib import Path

from ray import tune

from search.driver.config import PRETRAIN_DATA
from search.driver.encoders import (
    EncoderStore,
    describe,
    encoder_info,
    encoder_key,
    networks,
    source_kind,
)
from search.driver.stages.common import StageRunner
from search.experiment.folder import TRIALS
from search.experiment.storage import folder_digest
from search.shared.spec import PRETRAINED, SyntheticSource, TrialSpec
from trainables.nets.freeze import mask_name
from trainables.nets.strategies import get_strategy


def pretrain_spec(runner: StageRunner, network: str) -> TrialSpec:
    """The pretrain trial of one network for the configured source."""
    settings, cfg = runner.cfg.search.pretrain, runner.cfg
    kind = source_kind(settings.source)
    strategy = settings.strategy
    if get_strategy(strategy).network != network:  # the same parts, on this network
        strategy = mask_name(network, get_strategy(strategy).parts)
    updates = {"strategy": strategy, "seed": 0, "lr": settings.lr}
    updates |= {"epochs": settings.epochs, "encoder_weights": "none"}
    extra: dict = {"data_digest": None, "encoder_source": describe(cfg)}
    if kind == "synthetic":
        extra["synthetic"] = SyntheticSource(images=settings.synthetic_images, seed=0)
        updates |= {"hc_mask_outset_px": 0.0, **PRETRAIN_DATA}  # generated masks are exact
    elif kind == "hc18_folder":
        updates |= {"data_dir": settings.source, **PRETRAIN_DATA}
        extra["source_digest"] = folder_digest(settings.source)
    else:  # self-supervised: the target's training split (checked), or a folder of images
        updates["epochs"] = settings.pretext_epochs
        extra["pretext"] = settings.pretext
        if kind == "image_folder":
            extra["unlabelled_dir"] = str(Path(settings.source).resolve())
            extra["source_digest"] = folder_digest(settings.source)
        else:
            extra["data_digest"] = True
    return runner.spec("pretrain", **extra, **updates)


def run(runner: StageRunner) -> str:
    """The encoder weights later trials take: 'imagenet', or `PRETRAINED` (each trial fetches
    the experiment's pretrain checkpoint of its network)."""
    cfg, experiment = runner.cfg, runner.experiment
    kind = source_kind(cfg.search.pretrain.source)
    if kind == "imagenet":
        return "imagenet"
    todo = [n for n in networks(cfg) if n not in experiment.pretrained_networks()]
    if kind == "checkpoint":  # into the experiment, where every node's trials find it
        for network in todo:
            experiment.store.upload(
                cfg.search.pretrain.source, experiment.pretrain_encoder(network)
            )
            experiment.write_encoder_info(network, encoder_info(cfg, None, None))
        return PRETRAINED
    store = EncoderStore.for_study(cfg, experiment)
    specs = {}
    for network in todo:
        spec = pretrain_spec(runner, network)
        key = encoder_key(cfg, spec.trial.model_dump(mode="json"), runner.data_digest)
        if store is not None and store.has(key):
            info = store.fetch(key, experiment, network)
            print(
                f"[pretrain] {network}: reusing the encoder {info['reused_from']} "
                f"({info['description']}; pretrained in {info.get('wall_s') or 0:.0f} s)",
                flush=True,
            )
        else:
            specs[network] = (spec, key)
    if specs:
        grid = tune.grid_search([spec.to_param() for spec, _ in specs.values()])
        epochs = max(spec.trial.epochs for spec, _key in specs.values())
        runner.fit("pretrain", {"spec": grid}, len(specs), epochs=epochs)
    for network, (spec, key) in specs.items():
        if network not in experiment.pretrained_networks():
            raise RuntimeError(f"the pretrain stage left no {network} encoder; see {TRIALS}")
        result = experiment.read_result("pretrain", spec.name)
        experiment.write_encoder_info(network, encoder_info(cfg, key, result))
        if store is not None:
            store.put(key, experiment, network)
    return PRETRAINED
