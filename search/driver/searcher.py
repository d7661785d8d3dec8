"""Proposals from Optuna studies for one Tune experiment, rebuilt from the experiment on resume.

Ray's `OptunaSearch` drives one study per Tune experiment and keeps it in Optuna storage
outside the experiment (a SQLite file on the driver's disk), which a resume on another machine
cannot find. Here one Tune experiment holds several studies (one per strategy, each with its own
budget) so the cluster never idles between strategies, and a study's durable state is the
experiment itself: every finished, stopped or failed trial is in trials.csv and its result file,
so a resumed stage rebuilds each study from them (`StudyPlan.history`), re-proposes the trials a
killed driver left unfinished (they resume from their checkpoints: a proposal's name is derived
from its recipe), and proposes the paper's recipe only if no trial has trained it yet.
"""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field

import optuna
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.samplers import BaseGASampler
from ray.tune.search import Searcher

from search.driver.budget import Budget
from search.shared.spec import TrialSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class Past:
    """A trial of an earlier run of the stage: its parameters and how it ended."""

    params: dict
    state: str  # 'complete', 'failed' or 'unfinished' (to be proposed again)
    result: dict | None = None  # what it reported last (`val_dice`), for the objectives


def best_val_dice(spec: TrialSpec, result: dict | None) -> list[float] | None:
    """The tune studies' one objective: the trial's validation Dice."""
    value = (result or {}).get("val_dice")
    return None if value is None else [value]


@dataclass
class StudyPlan:
    """One Optuna study of the experiment: how its proposals become trials, its budget and
    history.

    Args:
        key: the study's name in the experiment (e.g. `tune_decoder`).
        space: define-by-run search space, `space(optuna_trial)`; it may return False for a
            proposal that must not train (the study records it as failed and asks again).
        make_spec: the trial spec of a proposal's parameters.
        canonical: the parameters as they are compared and named (so a proposal read back
            from trials.csv equals the one first proposed).
        budget: how many trials the study trains in all (earlier runs included).
        sampler: a picklable factory of the study's (seeded) sampler, e.g.
            `functools.partial(optuna.samplers.TPESampler, seed=0)`: Ray pickles the searcher
            with its plans, and a sampler itself may not pickle (see `__getstate__`).
        directions: one Optuna direction per objective.
        objectives: the objective values of a finished trial (its spec and last result).
        first: parameters to propose before sampling (e.g. the paper's recipe), unless tried.
        history: the trials of earlier runs.
    """

    key: str
    space: Callable
    make_spec: Callable[[dict], TrialSpec]
    canonical: Callable[[dict], dict]
    budget: int
    sampler: Callable[[], optuna.samplers.BaseSampler]
    directions: tuple[str, ...] = ("maximize",)
    objectives: Callable = best_val_dice
    first: list[dict] = field(default_factory=list)
    history: list[Past] = field(default_factory=list)
    study: optuna.Study = field(init=False)
    queue: list[dict] = field(init=False)
    proposed: int = field(init=False)

    def __post_init__(self):
        self.study = optuna.create_study(
            study_name=self.key, directions=list(self.directions), sampler=self._new_sampler()
        )
        tried, completed = [], 0
        for past in self.history:
            params = self.canonical(past.params)
            tried.append(params)
            if past.state == "unfinished":
                continue
            values = self.objectives(self.make_spec(params), past.result)
            frozen = _frozen(self.space, params, past.state, values)
            if frozen.state == optuna.trial.TrialState.COMPLETE:
                frozen.system_attrs.update(_generation(self.study.sampler, completed))
                completed += 1
            self.study.add_trial(frozen)
        unfinished = [self.canonical(p.params) for p in self.history if p.state == "unfinished"]
        fresh = [self.canonical(p) for p in self.first if self.canonical(p) not in tried]
        self.queue = unfinished + fresh
        self.proposed = len(self.history) - len(unfinished)
        # Proposals already trained (or training): a sampler may propose one again (NSGA-II's
        # crossover can), and a trial of the same name would only replay the stored result.
        self.seen = {_key(p) for p in tried if p not in unfinished}

    def __getstate__(self) -> dict:
        # Ray pickles the searcher (with its plans) when a Tuner is made. Optuna 5's genetic
        # samplers hold a thread lock, which does not pickle: the study travels without its
        # sampler and gets a new one from the factory when unpickled. Nothing is lost: a
        # sampler's lasting state (NSGA-II's generations) is kept in the study's trials.
        state = self.__dict__.copy()
        study = copy.copy(self.study)
        study.sampler = None
        state["study"] = study
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.study.sampler = self._new_sampler()

    def _new_sampler(self) -> optuna.samplers.BaseSampler:
        return with_parent_cache(self.sampler())

    @property
    def remaining(self) -> int:
        return max(0, self.budget - self.proposed)

    def propose(self) -> tuple[TrialSpec, optuna.trial.Trial] | None:
        """The next proposal as a trial spec; None when the space has no new proposal left
        (then the study's budget ends where it is, with a warning)."""
        for _ in range(MAX_INVALID_ASKS):
            if self.queue:
                self.study.enqueue_trial(self.queue.pop(0))
            trial = self.study.ask()
            valid = self.space(trial) is not False  # e.g. an all-frozen mask: never trained
            params = self.canonical(trial.params)
            if not valid or _key(params) in self.seen:
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            self.seen.add(_key(params))
            self.proposed += 1
            return self.make_spec(params), trial
        print(
            f"warning: {self.key}: {MAX_INVALID_ASKS} proposals in a row were all-frozen or "
            f"already trained; the study ends after {self.proposed} of {self.budget}",
            flush=True,
        )
        self.budget = self.proposed
        return None


MAX_INVALID_ASKS = 1000


def _key(params: dict) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def with_parent_cache(sampler: optuna.samplers.BaseSampler) -> optuna.samplers.BaseSampler:
    """A genetic sampler (NSGA-II) that finds a generation's parents in the study once.

    Optuna 5.1 looks a generation's parents up again at every proposal, by a scan of every trial
    of the study (`BaseGASampler.get_parent_population`): the time per proposal grew with the
    study (4.5 ms at the first 100 of 1,000 trials, 16.7 ms at the last 100). A generation's
    parents never change once chosen (Optuna records their ids in the study) and are finished
    trials, which never change either: kept here, a proposal costs the same at any size.
    """
    if not isinstance(sampler, BaseGASampler):
        return sampler
    lookup = sampler.get_parent_population
    cached: dict[tuple[int, int], list] = {}
    chosen: set[tuple[int, int]] = set()

    def get_parent_population(study: optuna.Study, generation: int) -> list:
        key = (study._study_id, generation)
        if key in cached:
            return list(cached[key])
        parents = lookup(study, generation)
        if key not in chosen:  # the first look-up chooses them (in selection order)
            chosen.add(key)
            return parents
        # The second finds them from the ids Optuna recorded, as every later one would (their
        # order differs between Optuna releases: 4.3's is not 5.1's): kept, proposals stay the same.
        if len(cached) > 2:  # proposals come from the newest generation or two
            cached.pop(min(cached))
        cached[key] = list(parents)
        return parents

    sampler.get_parent_population = get_parent_population  # what its own calls look up
    return sampler


def widened(distributions: dict, params: dict) -> dict:
    """Distributions that hold the given values: a config's own recipe may lie outside the
    search ranges (Optuna proposes it as given), and Optuna refuses to record a trial whose
    value its distribution does not contain."""
    out = {}
    for name, dist in distributions.items():
        value = params.get(name)
        numeric = isinstance(dist, FloatDistribution | IntDistribution) and value is not None
        if numeric and not dist.low <= value <= dist.high:
            dist = type(dist)(min(dist.low, value), max(dist.high, value), log=dist.log)
        out[name] = dist
    return out


def _generation(sampler, index: int) -> dict:
    """A genetic sampler's (NSGA-II's) generation for the `index`-th rebuilt complete trial, in
    the order they were proposed: without it the rebuilt trials belong to no population, and a
    resumed NSGA-II would start again from random proposals instead of breeding from them."""
    if not isinstance(sampler, BaseGASampler):
        return {}
    return {sampler._get_generation_key(): index // sampler.population_size}


def _frozen(space, params: dict, state: str, values) -> optuna.trial.FrozenTrial:
    """An earlier trial as Optuna records it (distributions from the space itself)."""
    probe = optuna.trial.FixedTrial(params)
    space(probe)
    complete = state == "complete" and values is not None
    kept = {k: v for k, v in params.items() if k in probe.distributions}
    return optuna.trial.create_trial(
        params=kept,
        distributions=widened(dict(probe.distributions), kept),
        values=list(values) if complete else None,
        state=optuna.trial.TrialState.COMPLETE if complete else optuna.trial.TrialState.FAIL,
    )


class StudySearcher(Searcher):
    """A Tune searcher over several `StudyPlan`s: each suggestion comes from the study with the
    fewest proposals so far that still has budget (so all studies advance together); done when
    every budget is spent. Scores come back as `metric` of the trial's last result."""

    def __init__(
        self,
        plans: list[StudyPlan],
        metric: str,
        mode: str = "max",
        budget: Budget | None = None,
        live=None,
    ):
        super().__init__(metric=metric, mode=mode)
        self.plans = plans
        self.budget = budget  # search.budget: no proposal once it is spent
        self.live = live  # a `search.driver.live_study.LiveStudies`: each told trial, for users
        self.running: dict[str, tuple[StudyPlan, TrialSpec, optuna.trial.Trial]] = {}

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.budget is not None and (spent := self.budget.exhausted()):
            proposed = sum(plan.proposed for plan in self.plans)
            planned = sum(plan.budget for plan in self.plans)
            self.budget.announce(spent, self.plans[0].key.split("_")[0], proposed, planned)
            return Searcher.FINISHED
        while open_plans := [plan for plan in self.plans if plan.remaining]:
            plan = min(open_plans, key=lambda p: p.proposed)
            proposal = plan.propose()
            if proposal is not None:
                spec, trial = proposal
                self.running[trial_id] = (plan, spec, trial)
                return {"spec": spec.to_param()}
        return Searcher.FINISHED

    def __getstate__(self) -> dict:
        # A running trial holds its study (and so the sampler): it travels as its number in
        # the study and is looked up again in the unpickled plan's study.
        state = self.__dict__.copy()
        state["running"] = {
            trial_id: (self.plans.index(plan), spec, trial.number)
            for trial_id, (plan, spec, trial) in self.running.items()
        }
        return state

    def __setstate__(self, state: dict) -> None:
        running = state.pop("running")
        self.__dict__.update(state)
        self.running = {}
        for trial_id, (index, spec, number) in running.items():
            plan = self.plans[index]
            frozen = plan.study.trials[number]
            self.running[trial_id] = (plan, spec, optuna.Trial(plan.study, frozen._trial_id))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        plan, spec, trial = self.running.pop(trial_id)
        values = None if error else plan.objectives(spec, result)
        told = (trial.params, trial.distributions) if self.live is not None else None
        if values is None:
            plan.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            plan.study.tell(trial, values)
        if told is not None:
            self.live.record(plan, spec.name, *told, values)

    def save(self, checkpoint_path: str) -> None:
        # The studies' durable state is the experiment (see the module docstring); Tune's
        # searcher checkpoint only records that.
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"state": "rebuilt from the experiment on resume"}, f)

    def restore(self, checkpoint_path: str) -> None:
        raise NotImplementedError("FreezeFrame rebuilds its studies from the experiment")
