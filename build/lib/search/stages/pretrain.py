"""Stage 1 (optional): the full MobileNetV2 U-Net trains on a source domain; its checkpoint
becomes the encoder weights of the later stages - transfer learning where ImageNet weights
cannot be downloaded."""

from __future__ import annotations

from search.config import PRETRAIN_DATA
from search.experiment import TRIALS
from search.spec import SyntheticSource
from search.stages.common import StageRunner


def run(runner: StageRunner) -> str:
    """Pretrain once per experiment; returns the checkpoint as later trials name it."""
    experiment, settings = runner.experiment, runner.cfg.search.pretrain
    if experiment.pretrain_encoder_uri() is None:
        updates = {
            "strategy": settings.strategy,
            "seed": 0,
            "epochs": settings.epochs,
            "lr": settings.lr,
            "encoder_weights": "none",
            **PRETRAIN_DATA,
        }
        synthetic = None
        if settings.source == "synthetic":
            synthetic = SyntheticSource(images=settings.synthetic_images, seed=0)
            updates["hc_mask_outset_px"] = 0.0  # generated masks are the exact ellipses
        else:
            updates["data_dir"] = settings.source
        spec = runner.spec("pretrain", synthetic=synthetic, **updates)
        runner.fit("pretrain", "pretrain", {"spec": spec.to_param()}, 1, num_samples=1)
    weights = experiment.pretrain_encoder_uri()
    if weights is None:
        raise RuntimeError(f"the pretrain stage finished without a checkpoint; see {TRIALS}")
    return weights
