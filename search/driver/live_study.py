"""The tune and explore stages' Optuna studies where a user looks at them: a live Optuna storage
written as trials finish (`optuna-dashboard <storage>` shows each study during the run), and a
copy in the experiment when a stage ends (`studies/<stage>.db`).

The studies that propose trials live in the driver's memory (`search.driver.searcher`), and the
experiment's results are their durable state; this module only records what they did. A stage
records its earlier runs' trials when it starts (`StudyPlan.history`, read from the experiment),
then each trial as it ends (`StudySearcher.on_trial_complete`). In a live study a trial is
written once, known by its name (the user attribute `trial_name`, as trials.csv names it): a
resumed stage writes only what the live study lacks. The live storage is a view: one that cannot
be reached or read (a server down, a corrupt journal) gives one warning, the study goes on
without it, and it is tried again after `RETRY_S` with everything it missed.

Where (`search.optuna_storage`):
    an RDB URL (sqlite:///..., postgresql://...)  Optuna's RDBStorage
    any other value                               a journal file (JournalStorage over a
                                                  JournalFileBackend: optuna-dashboard opens it
                                                  by its path)
    None                                          the journal `studies/journal.log` of a local
                                                  experiment; for a bucket experiment a journal
                                                  on the driver's disk,
                                                  `$FREEZEFRAME_CACHE/optuna/<name>-<id>.log`
    'none'                                        no live storage (the copy is still written)

A live study is named `<experiment name>/<key>` (`demo/tune_decoder`, `demo/explore`), so that
experiments can share one database, and carries the experiment's id: a study of that name made
by another experiment (or with other objectives) is left alone, with a warning. The copy in the
experiment names its studies by key alone (`tune_decoder`).
"""

from __future__ import annotations

import math
import tempfile
import time
import warnings
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.driver.searcher import StudyPlan, _frozen, widened
from search.experiment.folder import Experiment
from trainables.data.arrays import default_cache_dir

NO_STORAGE = "none"  # search.optuna_storage: no live storage
TRIAL_NAME = "trial_name"  # the user attribute that names a trial in a study
EXPERIMENT_ID = "experiment_id"  # the study's user attribute: the experiment that made it
RETRY_S = 300.0  # a live storage that failed is tried again after this long
CONNECT_TIMEOUT_S = 10  # an RDB server that does not answer: a warning, not a hung stage


def is_url(storage: str) -> bool:
    return "://" in storage


def live_target(setting: str | None, experiment: Experiment) -> str | None:
    """The live storage of `search.optuna_storage` = `setting`: a URL, a journal file's absolute
    path, or None (no live storage)."""
    if setting == NO_STORAGE:
        return None
    if setting is not None:
        return setting if is_url(setting) else str(Path(setting).expanduser().resolve())
    local = experiment.store.local_path(experiment.study_journal())
    if local is not None:
        return str(local)
    identity = experiment.identity()
    name = f"{experiment.name}-{identity}" if identity else experiment.name
    return str(default_cache_dir() / "optuna" / f"{name}.log")


def shown(target: str) -> str:
    """A storage as it may be printed: a URL without its password."""
    if not is_url(target):
        return target
    from sqlalchemy.engine import make_url

    try:
        return make_url(target).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: print only its scheme
        return target.split("://")[0] + "://..."


def open_storage(target: str) -> optuna.storages.BaseStorage:
    """The Optuna storage a live target names (a journal file is made with its folder)."""
    if is_url(target):
        engine = {}
        if target.startswith(("postgresql", "mysql")):
            engine = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
        return optuna.storages.RDBStorage(target, engine_kwargs=engine)
    from optuna.storages.journal import JournalFileBackend

    Path(target).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(target))


def past_trial(plan: StudyPlan, past) -> FrozenTrial:
    """An earlier run's trial (a `Past` that ended) as its study records it, with its name."""
    params = plan.canonical(past.params)
    spec = plan.make_spec(params)
    trial = _frozen(plan.space, params, past.state, plan.objectives(spec, past.result))
    trial.user_attrs[TRIAL_NAME] = spec.name
    return trial


def told_trial(name: str, params: dict, distributions: dict, values) -> FrozenTrial:
    """A trial as the searcher told its study: complete with its values, else failed (Optuna
    fails a trial whose value is NaN too)."""
    complete = values is not None and not any(math.isnan(v) for v in values)
    return optuna.trial.create_trial(
        params=params,
        distributions=widened(distributions, params),
        values=list(values) if complete else None,
        state=TrialState.COMPLETE if complete else TrialState.FAIL,
        user_attrs={TRIAL_NAME: name},
    )


class LiveStudies:
    """One stage's studies as recorded for users: every ended trial, in order, per study key;
    written to the live storage (when there is one) as they come, and copied into the
    experiment when the stage ends (`write_copy`).

    Pickles with the searcher (Ray pickles it): the storage is opened again where it is used.
    """

    def __init__(self, target: str | None, experiment_name: str, experiment_id: str = ""):
        self.target = target  # a URL or a journal file's path; None: no live storage
        self.experiment_name, self.experiment_id = experiment_name, experiment_id
        self.trials: dict[str, list[FrozenTrial]] = {}
        self.directions: dict[str, list[str]] = {}
        self.metric_names: dict[str, list[str]] = {}
        self._closed()

    @classmethod
    def start(
        cls,
        setting: str | None,
        experiment: Experiment,
        stage: str,
        plans: list[StudyPlan],
        metric_names: list[str],
    ) -> LiveStudies:
        """The stage's studies with the trials of its earlier runs, written to the live storage
        of `search.optuna_storage` = `setting` (a line says where to look)."""
        live = cls(live_target(setting, experiment), experiment.name, experiment.identity())
        for plan in plans:
            live.directions[plan.key] = list(plan.directions)
            live.metric_names[plan.key] = list(metric_names)
            ended = [past for past in plan.history if past.state != "unfinished"]
            live.trials[plan.key] = [past_trial(plan, past) for past in ended]
        live.sync()  # first: the journal the line names exists when it is printed
        if live.target is not None:
            where = shown(live.target)
            print(
                f"[optuna] {stage}: live studies in {where} (optuna-dashboard {where})", flush=True
            )
        return live

    def _closed(self) -> None:
        self._storage = None
        self._studies: dict[str, tuple[optuna.Study, set[str]] | None] = {}
        self._written: dict[str, int] = {}  # per key: how many of `trials` the storage holds
        self._retry_at = 0.0

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in ("_storage", "_studies", "_written", "_retry_at"):
            del state[key]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._closed()

    def record(self, plan: StudyPlan, name: str, params: dict, distributions: dict, values):
        """A trial the searcher has told `plan`'s study (values None: failed)."""
        try:
            trial = told_trial(name, params, distributions, values)
        except Exception as error:  # a view must never stop the study
            print(f"warning: [optuna] {plan.key}: {name} not recorded: {error}", flush=True)
            return
        self.directions.setdefault(plan.key, list(plan.directions))
        self.trials.setdefault(plan.key, []).append(trial)
        self.sync()

    def sync(self) -> None:
        """Write what the live storage lacks; on failure, warn and try again after RETRY_S."""
        if self.target is None or time.monotonic() < self._retry_at:
            return
        try:
            for key, trials in self.trials.items():
                self._write(key, trials)
        except Exception as error:
            detail = (str(error).splitlines() or [""])[0]  # SQLAlchemy's run over several lines
            print(
                f"warning: [optuna] search.optuna_storage {shown(self.target)}: "
                f"{type(error).__name__}: {detail}; the study goes on without its live view "
                f"(tried again in {RETRY_S:.0f} s; the experiment's results are unaffected)",
                flush=True,
            )
            self._closed()
            self._retry_at = time.monotonic() + RETRY_S

    def _write(self, key: str, trials: list[FrozenTrial]) -> None:
        if key not in self._studies:
            self._studies[key] = self._open(key)
        if self._studies[key] is None:  # another experiment's study of that name
            return
        study, names = self._studies[key]
        for trial in trials[self._written.get(key, 0) :]:
            if trial.user_attrs[TRIAL_NAME] not in names:
                study.add_trial(trial)
                names.add(trial.user_attrs[TRIAL_NAME])
        self._written[key] = len(trials)

    def _open(self, key: str) -> tuple[optuna.Study, set[str]] | None:
        if self._storage is None:
            self._storage = open_storage(self.target)
        name = f"{self.experiment_name}/{key}"
        study = optuna.create_study(
            storage=self._storage,
            study_name=name,
            directions=self.directions[key],
            load_if_exists=True,
        )
        owner = study.user_attrs.get(EXPERIMENT_ID)
        if owner is None:  # made now
            study.set_user_attr(EXPERIMENT_ID, self.experiment_id)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(self.metric_names.get(key) or ["objective"])
        wanted = [optuna.study.StudyDirection[d.upper()] for d in self.directions[key]]
        if owner not in (None, self.experiment_id) or study.directions != wanted:
            print(
                f"warning: [optuna] {shown(self.target)} already holds a study {name!r} of "
                f"another experiment (id {owner!r}) or with other objectives: left alone; "
                "delete it (optuna delete-study) or give this experiment another name",
                flush=True,
            )
            return None
        trials = study.get_trials(deepcopy=False)
        return study, {t.user_attrs.get(TRIAL_NAME) for t in trials}

    def write_copy(self, experiment: Experiment, stage: str) -> None:
        """The stage's studies as an Optuna SQLite file in the experiment (`study_db`), each
        trial once, studies named by key: `optuna-dashboard sqlite:///.../tune.db` or
        `optuna.load_study(study_name="tune_decoder", storage="sqlite:///...")`."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "study.db"
            storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
            for key, trials in self.trials.items():
                copy = optuna.create_study(
                    storage=storage, study_name=key, directions=self.directions[key]
                )
                unique = {t.user_attrs[TRIAL_NAME]: t for t in reversed(trials)}
                copy.add_trials([t for t in trials if unique[t.user_attrs[TRIAL_NAME]] is t])
            storage.engine.dispose()
            experiment.store.upload(path, experiment.study_db(stage))
