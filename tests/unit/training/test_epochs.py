"""The shared epoch loop on a two-weight model: a crash resumes after the last checkpoint and ends
where a straight run does, best.pt follows the `better` rule, the callback learns what was written."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainables.core.config import TrialConfig
from trainables.core.errors import ConfigError
from trainables.training.epochs import EpochLoop


class Crash(RuntimeError):
    pass


def make_loop(out_dir, cfg, scores=None, **hooks) -> tuple[EpochLoop, list[int]]:
    """A loop over nn.Linear(2, 1) with momentum SGD and a step schedule (kept as more_state);
    each epoch takes one step on data drawn from the epoch's seed. Returns (loop, epochs run)."""
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
    ran = []

    def better(new: dict, best: dict) -> bool:
        return new["score"] > best["score"]

    def step(epoch: int) -> tuple[dict, dict]:
        ran.append(epoch)
        rng = torch.Generator().manual_seed(epoch)
        x = torch.randn(8, 2, generator=rng)
        loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        record = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "loss": loss.item()}
        scheduler.step()
        score = scores[epoch - 1] if scores else -loss.item()
        return record, {"score": score, "epoch": epoch}

    loop = EpochLoop(
        cfg,
        out_dir,
        model,
        optimizer,
        torch.device("cpu"),
        step=step,
        describe=lambda r: f"epoch {r['epoch']} loss {r['loss']:.4f}",
        name="test",
        more_state=lambda: {"scheduler": scheduler.state_dict()},
        restore_more=lambda state: scheduler.load_state_dict(state["scheduler"]),
        best={"score": -float("inf"), "epoch": None},
        **({"better": better, "checkpoint_every": cfg.checkpoint_every} | hooks),
    )
    return loop, ran


def test_a_crash_resumes_after_the_last_checkpoint_and_ends_like_a_straight_run(tmp_path):
    cfg = TrialConfig(encoder_weights="none", epochs=5, checkpoint_every=2)
    straight_loop, _ = make_loop(tmp_path / "straight", cfg)
    straight = straight_loop.run()
    assert [r["lr"] for r in straight.history] == [0.1, 0.1, 0.1, 0.05, 0.05]

    def crash_in_epoch_3(record, out_dir, written):
        if record["epoch"] == 3:
            raise Crash

    crashing, ran = make_loop(tmp_path / "crashed", cfg, on_epoch=crash_in_epoch_3)
    with pytest.raises(Crash):
        crashing.run()
    assert ran == [1, 2, 3]
    lines = []
    resuming, ran = make_loop(tmp_path / "crashed", cfg, log=lines.append)
    resumed = resuming.run()
    # last.pt was written after epoch 2 (checkpoint_every=2): epoch 3 is run again.
    assert ran == [3, 4, 5] and resumed.resumed_after_epoch == 2
    assert lines[0] == "resuming test after epoch 2/5"
    assert lines[1:] == [f"epoch {r['epoch']} loss {r['loss']:.4f}" for r in straight.history[2:]]
    # Weights, momentum and the rate schedule came back: the same losses, to the bit.
    assert resumed.history == straight.history
    assert resumed.best == straight.best
    for name in ("best.pt", "last.pt"):
        a = torch.load(tmp_path / "straight" / name, weights_only=True)
        b = torch.load(tmp_path / "crashed" / name, weights_only=True)
        assert a["epoch"] == b["epoch"]
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    # A checkpoint resumes only the training it was written by.
    other, _ = make_loop(tmp_path / "crashed", cfg.model_copy(update={"lr": 0.5}))
    with pytest.raises(ConfigError, match="other settings \\(lr\\)"):
        other.run()


def test_best_pt_follows_the_rule_and_the_callback_learns_what_was_written(tmp_path):
    cfg = TrialConfig(encoder_weights="none", epochs=5, checkpoint_every=2)
    written, weights = {}, {}

    def on_epoch(record, out_dir, files):
        assert out_dir == tmp_path
        written[record["epoch"]] = files
        weights[record["epoch"]] = loop.model.weight.detach().clone()

    loop, _ = make_loop(tmp_path, cfg, scores=[0.3, 0.5, 0.5, 0.2, 0.4], on_epoch=on_epoch)
    done = loop.run()
    # Epoch 2 beats 1; the tie in 3 keeps 2; last.pt every 2nd epoch and after the last.
    assert written == {
        1: ["best.pt"],
        2: ["best.pt", "last.pt"],
        3: [],
        4: ["last.pt"],
        5: ["last.pt"],
    }
    assert done.best == {"score": 0.5, "epoch": 2}
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert sorted(best) == ["config", "epoch", "model", "strategy"]
    assert best["epoch"] == 2 and best["strategy"] == cfg.strategy
    assert torch.equal(best["model"]["weight"], weights[2])
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    keys = ["epoch", "model", "optimizer", "scheduler", "history", "best", "config"]
    assert list(last) == keys
    assert last["epoch"] == 5 and last["best"] == done.best
    assert [r["epoch"] for r in last["history"]] == [1, 2, 3, 4, 5]
    assert torch.equal(last["model"]["weight"], weights[5])


def test_without_a_rule_every_epoch_is_the_best_and_last_pt_keeps_no_best(tmp_path):
    cfg = TrialConfig(encoder_weights="none", epochs=3, checkpoint_every=2)
    written = []
    loop, _ = make_loop(
        tmp_path, cfg, better=None, checkpoint_every=1, on_epoch=lambda r, d, f: written.append(f)
    )
    done = loop.run()
    assert written == [["best.pt", "last.pt"]] * 3
    assert done.best == {"score": done.best["score"], "epoch": 3}
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert "best" not in last and last["epoch"] == 3
    assert torch.load(tmp_path / "best.pt", weights_only=True)["epoch"] == 3
