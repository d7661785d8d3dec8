"""The `search.wandb` settings: where a study logs in W&B and what it logs there.

A config gives either the mode alone, as configs always did (`wandb: offline`), or a mapping
(`wandb: {mode: online, entity: my-team, project: hc18, log_checkpoints: true}`). The older
`search.wandb_project` still fills `project` (deprecated). The driver validates both forms
(`search.driver.config`); the report reads them from a stored config (`wandb_options`), so an
experiment written before the mapping existed keeps its project.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Literal

from pydantic import Field, field_validator

from trainables.core.config import StrictModel

DEFAULT_PROJECT = "freezeframe"
# W&B refuses '/', '\', '#', '?', '%' and ':' in entity and project names, and over 128 characters.
NAME_PATTERN = r"^[^/\\#?%:]{1,128}$"

SystemMetrics = Literal["auto", "on", "off"]
# Per-epoch metrics whose trial-run summary is their best epoch, not their last (`define_metric`
# in `search.worker.wandb_link`): the run table shows the best validation Dice of every run, also
# of one ASHA stopped; the W&B Report (`search.report.wandb_report`) names them so (val_dice.max).
EPOCH_SUMMARIES = MappingProxyType({"val_dice": "max", "train_loss": "min"})


class WandbOptions(StrictModel):
    """`search.wandb` as a mapping (a plain string is its `mode`)."""

    mode: Literal["online", "offline", "disabled", "auto"] = Field(
        "auto",
        description="auto = online when logged in (or search.wandb_key_on_workers), else "
        "offline; --wandb overrides it",
    )
    project: str = Field(DEFAULT_PROJECT, pattern=NAME_PATTERN)
    entity: str | None = Field(
        None, pattern=NAME_PATTERN, description="the W&B team (entity); None = the login's default"
    )
    log_checkpoints: bool = Field(
        False,
        description="the final stage's best checkpoint per strategy (best seed by validation "
        "Dice) as a W&B model artifact; needs search.keep_best_checkpoints",
    )
    system_metrics: SystemMetrics = Field(
        "auto",
        description="W&B's system metrics (GPU and CPU use, memory) in each trial's run: on, "
        "off, or auto = on (measured: no wall time lost on a CPU; a GPU trial's charts show "
        "the GPUs Ray granted it)",
    )

    @field_validator("system_metrics", mode="before")
    @classmethod
    def _yaml_words(cls, value: Any) -> Any:
        """YAML reads a bare on/off (a config file, `--set`) as true/false."""
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


def merge_legacy_keys(search: dict[str, Any]) -> dict[str, Any]:
    """A `search` section with `wandb` as a mapping: a mode string becomes `{mode: ...}` and the
    deprecated `wandb_project` fills `project`. Raises ValueError naming both keys when they
    disagree."""
    if not isinstance(search, dict):
        return search
    search = dict(search)
    wandb = search.get("wandb", {})
    wandb = {"mode": wandb} if isinstance(wandb, str) else wandb
    legacy = search.pop("wandb_project", None)
    if legacy is not None and isinstance(wandb, dict):
        given = wandb.get("project")
        if given is not None and given != legacy:
            raise ValueError(
                f"search.wandb_project ({legacy!r}) and search.wandb.project ({given!r}) "
                "differ; give the project once, as search.wandb.project (wandb_project is "
                "its deprecated name)"
            )
        wandb = {**wandb, "project": legacy}
    checkpoints = isinstance(wandb, dict) and wandb.get("log_checkpoints") is True
    if checkpoints and search.get("keep_best_checkpoints") is False:  # its default is true
        raise ValueError(
            "search.wandb.log_checkpoints logs each strategy's best.pt, which "
            "search.keep_best_checkpoints: false deletes; set one of them the other way"
        )
    if wandb != {}:
        search["wandb"] = wandb
    return search


def wandb_options(search: dict[str, Any]) -> WandbOptions:
    """The W&B settings of a stored config's `search` section, in either form (the report's
    reading: an older experiment's `wandb: offline` and `wandb_project: x` included)."""
    return WandbOptions.model_validate(merge_legacy_keys(search or {}).get("wandb", {}))
