"""Building a trial's training: torch.compile computes the same function as eager, a trial takes
only its threads, and (on a GPU) training steps do not wait for the device."""

from __future__ import annotations

import pytest
import torch
from helpers import decoder_64px

from trainables.core.config import TrialConfig
from trainables.data.trial_data import load_trial_data
from trainables.training.loop import evaluate, train_one_epoch
from trainables.training.setup import build_training

CUDA = torch.cuda.is_available()
GPU = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="no CUDA device")]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("device", "mode", "rel"),
    [
        ("cpu", "default", 1e-3),
        # CUDA graphs; fp32 (amp off) so that only the compiler differs. Tolerance not yet
        # calibrated on a GPU: cuDNN may pick other algorithms for the compiled graph.
        pytest.param("cuda", "reduce-overhead", 1e-2, marks=GPU),
    ],
)
def test_compiled_network_computes_the_same_function(synthetic_dir, tmp_path, device, mode, rel):
    """cfg.compile wraps the network in torch.compile (CUDA graphs on a GPU with
    'reduce-overhead'); on the CPU 'default' compiles with Inductor. Same losses, same weights,
    same evaluation as eager, and checkpoints keep the eager module's keys."""
    runs = {}
    for compile_mode in ("off", mode):
        cfg = decoder_64px(
            synthetic_dir,
            tmp_path,
            device=device,
            amp=False,
            batch_size=4,
            eval_batch_size=1,  # every evaluation batch is full: through the compiled graph
            bn_momentum=None,
            augment_backend="torch",
            compile=compile_mode,
        )
        data = load_trial_data(cfg)
        trial = build_training(cfg, data, verbose=False)
        losses = [train_one_epoch(trial, epoch, max_steps=2)["train_loss"] for epoch in range(2)]
        runs[compile_mode] = (trial, losses, evaluate(trial, data.val, shape_metrics=False))
    (eager, eager_losses, eager_val), (compiled, compiled_losses, compiled_val) = runs.values()
    assert eager.net is eager.model
    assert compiled.net is not compiled.model  # the batches really went through the compiler
    assert compiled_losses == pytest.approx(eager_losses, rel=rel)
    assert compiled_val["dice"] == pytest.approx(eager_val["dice"], abs=rel)
    eager_state, compiled_state = eager.model.state_dict(), compiled.model.state_dict()
    assert list(compiled_state) == list(eager_state)
    for key, value in eager_state.items():
        torch.testing.assert_close(compiled_state[key], value, rtol=rel, atol=1e-5, msg=key)


def test_a_trial_takes_only_its_threads(sample_dir, tmp_path):
    import cv2

    torch_before, cv2_before = torch.get_num_threads(), cv2.getNumThreads()
    try:
        torch.set_num_threads(2)
        cv2.setNumThreads(2)
        cfg = TrialConfig(
            encoder_weights="none", image_size=32, cache_dir=str(tmp_path), num_threads=1
        )
        build_training(cfg, verbose=False)
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (1, 1)
    finally:
        torch.set_num_threads(torch_before)
        cv2.setNumThreads(cv2_before)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="no CUDA device")
def test_training_steps_do_not_wait_for_the_gpu(synthetic_dir, tmp_path):
    """No host sync per step: the host syncs a fixed number of times per epoch (reading the
    loss), however many steps run. CUDA's sync debug mode warns at every synchronising call."""
    import warnings

    cfg = decoder_64px(synthetic_dir, tmp_path, device="cuda", batch_size=2)
    trial = build_training(cfg, verbose=False)
    train_one_epoch(trial, 0, max_steps=2)  # warm-up: cuDNN benchmarking, allocator growth
    syncs = {}
    for steps in (2, 6):
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                train_one_epoch(trial, steps, max_steps=steps)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs[steps] = sum("synchroniz" in str(w.message) for w in caught)
    assert syncs[2] >= 1  # the loss read at the end of the epoch is seen
    assert syncs[6] == syncs[2], syncs
