"""``worldmodel tune``: search an algorithm's hyperparameters and the wrapper factors with Optuna.

Each trial samples a recipe from :func:`agents.search_spaces.search_space` (TPE sampler,
MedianPruner, as rl-baselines3-zoo does), writes it as a preset to
``OUT/trials/<number>/recipe.yaml`` and trains it with :func:`agents.train.train_agent` into
that run directory, for ``--budget-frames`` env frames (agent steps = frames / frame skip,
so trials of different frame skips get the same experience). Each intermediate evaluation
is reported to the trial, and a trial the pruner stops raises ``TrialPruned``. The score
is the mean deterministic return over ``--eval-episodes``; the mean return with sampled
actions is kept as the trial's ``sampled_mean_return`` (a policy whose deterministic action
does nothing shows there).

The study lives in ``OUT/study.db`` (SQLite); one ``tune`` process at a time works on it (``OUT/study.lock``).
Rerunning the command continues it until ``--n-trials`` trials are complete or pruned: a trial
that a killed process left running, or one stopped by an error of the machine (a full disk), is
marked failed and its parameters run once more. Each trial's parameters are sampled with the seed
``--seed`` plus the number of trials finished before it, so an interrupted study continued this way
ends with the trials an uninterrupted one has.
Each run ends by writing ``OUT/best.yaml`` (the best trial's recipe, an rl-zoo preset for
``train-agent --hyperparams``) and ``OUT/trials.csv``. One trial per study tries the preset's own
values (``--no-start-from-preset``: none), marked ``from_preset``.

>>> parse_fixed(["frame_skip=2", "include_action=true"], search_space("ppo", continuous=False))
{'frame_skip': 2, 'include_action': True}
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import inspect
import logging
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
import sqlalchemy.exc
import yaml
from filelock import FileLock, Timeout
from gymnasium import spaces
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from stable_baselines3.common.callbacks import BaseCallback

from agents.algorithms import AlgorithmSpec, check_action_space, get_algorithm
from agents.evaluate import EvaluateConfig, evaluate_agent
from agents.hyperparams import Hyperparams, env_entry, load_yaml_file, policy_kwargs_yaml, resolve_hyperparams
from agents.resume import CHECKPOINT_DIR
from agents.search_spaces import SearchSpace, search_space
from agents.train import AgentConfig, resolve, train_agent
from agents.vec_env import StackConfig, check_stack
from worldmodel.common.atomic import atomic_path
from worldmodel.common.configargs import add_config_arguments, config_from_args
from worldmodel.common.errors import UserError
from worldmodel.vae.checkpoint import file_sha256

COMMAND_HELP = "search an algorithm's hyperparameters and wrapper factors with Optuna into OUT/best.yaml (resumable)"
"""One line for ``worldmodel --help``."""

STUDY_DB = "study.db"
STUDY_LOCK = "study.lock"
TRIALS_DIR = "trials"
RECIPE_FILE = "recipe.yaml"
BEST_FILE = "best.yaml"
TRIALS_CSV = "trials.csv"
SAMPLED_EVALUATION_FILE = "evaluation_sampled.json"
STUDY_KEYS = ("env_id", "algo", "budget_frames", "vae_sha256")
"""What makes trials comparable: a study in OUT that differs in one of these is refused."""


class TuneError(UserError, ValueError):
    """Tuning input the search cannot use (the message names the fix)."""


class TrialDiverged(ValueError):
    """A sampled recipe that training cannot go on with (NaN actions): its trial fails and the study goes on."""


DIVERGED = "diverged"
"""User attribute of a trial whose recipe diverged (its parameters are not tried again)."""


@dataclass(frozen=True)
class TuneConfig:
    """Settings of one ``tune`` study."""

    env_id: str
    """Gymnasium env id, e.g. CarRacing-v3 or worldmodel/DotTargetContinuous-v0."""
    vae: str | None = None
    """VAE checkpoint (.safetensors) whose latents the agents see."""
    algo: str = "ppo"
    """Algorithm whose search space is sampled: ppo, recurrentppo, sac, tqc."""
    out: str | None = None
    """Study directory; rerun with the same --out to continue (default: runs/tune/<env>__<algo>)."""
    n_trials: int = 20
    """Complete or pruned trials the study ends with, counting those of earlier runs."""
    budget_frames: int = 200_000
    """Env frames each trial trains for (agent steps = frames / frame_skip)."""
    n_evaluations: int = 4
    """Intermediate evaluations per trial, reported to the pruner."""
    eval_episodes: int = 5
    """Episodes of each evaluation (the intermediate ones and the final score)."""
    n_startup_trials: int = 5
    """Trials sampled at random before TPE takes over; the pruner prunes none of them either."""
    fixed: tuple[str, ...] = ()
    """NAME=VALUE pairs (YAML values) fixed instead of sampled, e.g. --fixed frame_skip=2 use_sde=false."""
    hyperparams: str | None = None
    """rl-zoo-style YAML merged over the shipped preset; the keys it sets are not sampled."""
    seed: int = 0
    """Seed of the sampler and of every trial's training."""
    start_from_preset: bool = True
    """Enqueue the preset's own values (those the search space holds) as a trial, so that the study scores
    the known recipe at its budget and TPE starts from it; once per study."""
    backend: Literal["gymnasium", "envpool"] = "gymnasium"
    """Env backend of training (scores are always taken on gymnasium)."""
    device: str = "auto"
    """Device of the policy and the encoder: auto, cpu, cuda."""
    torch_threads: int | None = None
    """Torch CPU threads of the trainer (default: as train-agent)."""
    verbose: int = 0
    """SB3 verbosity (0, 1, 2)."""

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / "tune" / f"{self.env_id.replace('/', '-')}__{self.algo}"

    @property
    def study_name(self) -> str:
        return f"{self.env_id.replace('/', '-')}__{self.algo}"


def parse_fixed(items: tuple[str, ...] | list[str], space: SearchSpace) -> dict[str, Any]:
    """``NAME=VALUE`` pairs as a dict (values read as YAML); every name must be a parameter of ``space``."""
    fixed: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in space.names():
            raise TuneError(
                f"--fixed {item}: expected NAME=VALUE with NAME a parameter of the {space.algo} search space "
                f"({', '.join(space.names())})"
            )
        fixed[name] = yaml.safe_load(value)
    return fixed


@dataclass(frozen=True)
class Plan:
    """What every trial of a study shares, checked before anything is written."""

    space: SearchSpace
    """The search space, its rollout choices narrowed to what the budget holds."""
    fixed: dict[str, Any]
    """--fixed values."""
    given: dict[str, Any]
    """The --hyperparams entry for the env (its keys are not sampled)."""
    n_envs: int
    """Training envs of every trial."""
    attrs: dict[str, Any]
    """The study's identity (:data:`STUDY_KEYS`)."""
    policy_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The preset's policy_kwargs (YAML form); a trial's sampled ones are set over them, the others kept."""
    preset_values: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The sampled parameters' values in the preset (:meth:`SearchSpace.values_of`), for ``start_from_preset``."""

    def recipe(self, sampled: dict[str, Any]) -> dict[str, Any]:
        """A trial's preset entry: the --hyperparams entry with ``sampled`` (:meth:`SearchSpace.to_preset`) over it.

        Sampled policy keywords (``net_arch``, ``log_std_init``, ...) replace only themselves: an
        activation or ``ortho_init`` the preset sets stays.
        """
        if "policy_kwargs" in sampled:
            sampled = {**sampled, "policy_kwargs": {**self.policy_kwargs, **sampled["policy_kwargs"]}}
        return {**self.given, **sampled}


def _default(spec: AlgorithmSpec, hp: Hyperparams, name: str) -> Any:
    return hp.algo_kwargs.get(name, inspect.signature(spec.load_class().__init__).parameters[name].default)


def fit_budget(
    space: SearchSpace, spec: AlgorithmSpec, hp: Hyperparams, values: dict[str, Any], budget: int
) -> SearchSpace:
    """``space`` with its rollout choices narrowed to those the budget holds at the largest frame skip.

    One rollout is ``n_steps x n_envs`` agent steps on-policy; off-policy, training starts after
    ``learning_starts``. ``values``: the fixed and --hyperparams values. A budget too small for
    every choice is a :class:`TuneError`.
    """
    skip = values.get("frame_skip") or max(space.param("frame_skip").choices)
    steps = budget // skip
    if spec.off_policy:
        name, fits, unit = "learning_starts", lambda v: v < steps, "the {} steps of learning_starts"
    else:
        name, fits, unit = "n_steps", lambda v: v * hp.n_envs <= steps, f"one rollout of {{}} steps x {hp.n_envs} envs"
    if name in values or name not in space.names():
        smallest = values.get(name, _default(spec, hp, name))
        if fits(smallest):
            return space
    else:
        narrowed = space.restrict(name, fits)
        if name in narrowed.names():
            return narrowed
        smallest = min(space.param(name).choices)
    raise TuneError(
        f"--budget-frames {budget} gives a trial {steps} agent steps at frame skip {skip}, less than "
        f"{unit.format(smallest)}; raise --budget-frames, or fix a smaller {name} or frame_skip (--fixed)"
    )


def plan_study(config: TuneConfig) -> Plan:
    """Check every input (algorithm, env, VAE, budget, --fixed, an existing study in OUT); nothing is written."""
    spec = get_algorithm(config.algo)
    search_space(spec.name, continuous=True)  # an algorithm without a search space is refused first
    if config.n_trials < 1 or config.n_evaluations < 1 or config.eval_episodes < 1:
        raise TuneError("--n-trials, --n-evaluations and --eval-episodes must be at least 1")
    hp = resolve_hyperparams(spec.name, config.env_id, user_file=config.hyperparams)
    stack = StackConfig(config.env_id, env_kwargs=hp.env_kwargs, backend=config.backend)
    checkpoint, action_space = check_stack(stack, config.vae)
    check_action_space(spec, action_space, config.env_id)
    space = search_space(spec.name, continuous=isinstance(action_space, spaces.Box))
    fixed = parse_fixed(config.fixed, space)
    given = env_entry(load_yaml_file(config.hyperparams), config.env_id) if config.hyperparams else {}
    space = fit_budget(space, spec, hp, {**given, **fixed}, config.budget_frames)
    attrs = {
        "env_id": config.env_id,
        "algo": spec.name,
        "budget_frames": config.budget_frames,
        "vae_sha256": file_sha256(checkpoint.path),
    }
    _check_existing_study(config.out_dir / STUDY_DB, attrs)
    policy_kwargs = policy_kwargs_yaml(hp.algo_kwargs.get("policy_kwargs"))
    preset = {**hp.algo_kwargs, "policy_kwargs": policy_kwargs, "frame_skip": hp.frame_skip}
    preset |= {"latent_history": hp.latent_history, "include_action": hp.include_action}
    sampled = [p.name for p in space.params if p.name not in fixed and p.left_to(given)]
    preset_values = {k: v for k, v in space.values_of(preset).items() if k in sampled}
    return Plan(space, fixed, given, hp.n_envs, attrs, policy_kwargs, preset_values)


@contextlib.contextmanager
def _reading(db: Path) -> Iterator[None]:
    """Inside, a database error of ``db`` (damaged, or out of room) ends in one line naming the file and the fix."""
    try:
        yield
    except (sqlalchemy.exc.DatabaseError, optuna.exceptions.StorageInternalError) as exc:
        cause = getattr(exc, "orig", None) or exc
        raise TuneError(
            f"{db} cannot be used as an Optuna study ({cause}); if the disk is full, make room and run the command "
            f"again; if the file is damaged, restore it from a copy, or move it away to start the study anew (the "
            f"trials' runs in {db.parent / TRIALS_DIR} stay)"
        ) from exc


def _storage(path: Path) -> RDBStorage:
    with _reading(path):
        return RDBStorage(f"sqlite:///{path}")


def _check_existing_study(db: Path, attrs: dict[str, Any]) -> None:
    if not db.is_file():
        return
    with _reading(db):
        summaries = optuna.get_all_study_summaries(_storage(db), include_best_trial=False)
    for summary in summaries:
        theirs = {key: summary.user_attrs.get(key) for key in STUDY_KEYS}
        if theirs != attrs and any(v is not None for v in theirs.values()):  # None: killed before it was labelled
            differ = ", ".join(f"{k} {theirs[k]!r} (now {attrs[k]!r})" for k in STUDY_KEYS if theirs[k] != attrs[k])
            raise TuneError(
                f"{db.parent} holds the study {summary.study_name!r} of another setup: {differ}; "
                "continue it with the same env, --algo, --budget-frames and --vae, or choose another --out"
            )


def _check_values(study: optuna.Study, db: Path) -> None:
    """Refuse a study whose complete trials lost their scores (a damaged ``db`` missing its values table reads as
    empty: Optuna creates the table anew)."""
    lost = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values is None]
    if lost:
        raise TuneError(
            f"{db} is damaged: complete trial(s) {', '.join(map(str, lost))} have no score; restore it from a copy, "
            f"or move it away to start the study anew (the trials' runs in {db.parent / TRIALS_DIR} stay)"
        )


@contextlib.contextmanager
def _only_process(out_dir: Path) -> Iterator[None]:
    """Hold ``OUT/study.lock`` while inside: a second ``tune`` on the same study is refused, so every trial
    found running belongs to a process that died."""
    try:
        held = FileLock(out_dir / STUDY_LOCK).acquire(timeout=0)
    except Timeout:
        raise TuneError(
            f"another `worldmodel tune` is working on {out_dir}; wait for it to end, or choose another --out"
        ) from None
    with held:
        yield


def retry_interrupted(study: optuna.Study) -> None:
    """Mark the trials a dead process left running as failed, and queue the parameters of each trial that was
    interrupted (killed, or stopped by an error of the machine, not one of its recipe) once more."""
    retried = {t.system_attrs.get("failed_trial") for t in study.get_trials(deepcopy=False)}
    with warnings.catch_warnings():  # "experimental" since Optuna 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=1)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.FAIL)):
        if trial.state == TrialState.RUNNING:
            study.tell(trial.number, state=TrialState.FAIL)
        if trial.number not in retried and DIVERGED not in trial.user_attrs:
            retry(study, study.trials[trial.number])


class _UserErrorsInOneLine(logging.Filter):
    """Drops Optuna's "Trial N failed" record (with its traceback) for a :class:`UserError`: the command ends
    with that error's one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], UserError))


@contextlib.contextmanager
def _user_errors_in_one_line() -> Iterator[None]:
    handlers, quiet = logging.getLogger("optuna").handlers, _UserErrorsInOneLine()
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


def make_sampler(config: TuneConfig, finished: int = 0) -> optuna.samplers.BaseSampler:
    """TPE for the next trial, seeded from ``config.seed`` and the number of trials ``finished`` before it: a
    resumed study draws new parameters instead of replaying the first run's, and the same ones an
    uninterrupted study draws."""
    return optuna.samplers.TPESampler(n_startup_trials=config.n_startup_trials, seed=config.seed + finished)


def make_pruner(config: TuneConfig) -> optuna.pruners.BasePruner:
    """The rl-zoo choice: the median of earlier trials at the same evaluation, after a third of a trial's."""
    return optuna.pruners.MedianPruner(
        n_startup_trials=config.n_startup_trials, n_warmup_steps=config.n_evaluations // 3
    )


class TrialReporter(BaseCallback):
    """Reports each evaluation's mean return to an Optuna trial; ends training when the trial should be pruned.

    Run as ``train_agent(..., after_eval=TrialReporter(trial, n_evaluations))``; its ``parent``
    is the ``EvalCallback``. Evaluations are numbered 1, 2, ... so that trials of different
    frame skips are compared at the same share of their frame budget. The last evaluation
    prunes nothing: training is over by then, and a final score is worth its few episodes.
    """

    def __init__(self, trial: optuna.Trial, n_evaluations: int) -> None:
        super().__init__()
        self.trial = trial
        self.n_evaluations = n_evaluations
        self.evaluations = 0
        self.pruned = False

    def _on_step(self) -> bool:
        self.evaluations += 1
        self.trial.report(float(self.parent.last_mean_reward), self.evaluations)
        self.pruned = self.evaluations < self.n_evaluations and self.trial.should_prune()
        return not self.pruned


def _objective(config: TuneConfig, plan: Plan) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        values = plan.space.sample(trial, plan.fixed, plan.given)
        layout = plan.policy_kwargs.get("net_arch")
        recipe = plan.recipe(plan.space.to_preset(values, n_envs=plan.n_envs, net_arch=layout))
        run_dir = config.out_dir / TRIALS_DIR / str(trial.number)
        run_dir.mkdir(parents=True)
        recipe_path = run_dir / RECIPE_FILE
        recipe_path.write_text(yaml.safe_dump({config.env_id: recipe}, sort_keys=False))
        agent = AgentConfig(
            config.env_id,
            vae=config.vae,
            algo=config.algo,
            out=str(run_dir),
            seed=config.seed,
            hyperparams=str(recipe_path),
            backend=config.backend,
            device=config.device,
            torch_threads=config.torch_threads,
            eval_episodes=config.eval_episodes,
            progress_bar=False,
            tensorboard=False,
            verbose=config.verbose,
        )
        steps = config.budget_frames // resolve(agent)[2].env_config().frame_skip
        agent = dataclasses.replace(
            agent, timesteps=steps, eval_freq=max(1, steps // config.n_evaluations), checkpoint_freq=steps
        )
        trial.set_user_attr("recipe", {**recipe, "n_timesteps": steps})
        trial.set_user_attr("agent_steps", steps)
        reporter = TrialReporter(trial, config.n_evaluations)
        try:
            train_agent(agent, after_eval=reporter, stop_on_signal=False)  # a killed trial is retried, not resumed
        except UserError:
            raise  # of the machine (disk full...) or the inputs: the command stops; a rerun retries the trial
        except ValueError as exc:
            trial.set_user_attr(DIVERGED, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            raise TrialDiverged(str(exc)) from exc
        shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)  # trials are never resumed; bundles stay
        if reporter.pruned:
            raise optuna.TrialPruned(f"pruned after evaluation {reporter.evaluations} of {config.n_evaluations}")
        score = _evaluate(config, run_dir, deterministic=True)
        trial.set_user_attr("sampled_mean_return", _evaluate(config, run_dir, deterministic=False))
        return score

    return objective


def _evaluate(config: TuneConfig, run_dir: Path, *, deterministic: bool) -> float:
    out = None if deterministic else str(run_dir / SAMPLED_EVALUATION_FILE)
    evaluation = EvaluateConfig(
        str(run_dir), episodes=config.eval_episodes, deterministic=deterministic, out=out, device=config.device
    )
    return float(evaluate_agent(evaluation)["mean_return"])


FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _count(study: optuna.Study, *states: TrialState) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


def tune(config: TuneConfig) -> optuna.Study:
    """Run (or continue) the study in ``config.out_dir`` until ``n_trials`` trials are complete or pruned;
    writes ``best.yaml`` and ``trials.csv`` there and returns the study."""
    plan = plan_study(config)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    db = config.out_dir / STUDY_DB
    with _only_process(config.out_dir), _reading(db):
        study = optuna.create_study(study_name=config.study_name, storage=_storage(db), pruner=make_pruner(config),
                                    direction="maximize", load_if_exists=True)  # fmt: skip
        _check_values(study, db)
        if config.start_from_preset and plan.preset_values:
            enqueue_preset(study, plan.preset_values)
        for key, value in plan.attrs.items():
            study.set_user_attr(key, value)
        retry_interrupted(study)

        def reseed(study: optuna.Study, _trial: object = None) -> None:
            study.sampler = make_sampler(config, _count(study, *FINISHED))

        reseed(study)
        remaining = config.n_trials - _count(study, *FINISHED)
        if remaining > 0:
            with _user_errors_in_one_line():
                # catch TrialDiverged: a sampled recipe can diverge (NaN actions); the trial fails, the study goes on
                study.optimize(_objective(config, plan), n_trials=remaining, catch=(TrialDiverged,),
                               callbacks=[reseed])  # fmt: skip
        write_trials_csv(study, config.out_dir / TRIALS_CSV)
        if _count(study, TrialState.COMPLETE):
            write_best(study, config, config.out_dir / BEST_FILE)
    return study


def enqueue_preset(study: optuna.Study, values: dict[str, Any]) -> None:
    """Queue ``values`` (the preset's) as the next trial, unless the study already has them; the trial's
    ``from_preset`` attribute marks it. The other parameters are sampled as usual."""
    study.enqueue_trial(values, user_attrs={"from_preset": True}, skip_if_exists=True)


def write_best(study: optuna.Study, config: TuneConfig, path: Path) -> None:
    """The best trial's recipe as an rl-zoo preset (``<env id>: {...}``), with a header naming where it came from."""
    best = study.best_trial
    states = {s: _count(study, s) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    header = [
        f"worldmodel tune: study {study.study_name} in {path.parent / STUDY_DB}",
        f"budget: {config.budget_frames} env frames per trial; {len(study.trials)} trials "
        f"({states[TrialState.COMPLETE]} complete, {states[TrialState.PRUNED]} pruned, "
        f"{states[TrialState.FAIL]} failed)",
        f"best: trial {best.number}, mean return {best.value:.2f} over {config.eval_episodes} episodes with "
        f"deterministic actions, {best.user_attrs.get('sampled_mean_return', float('nan')):.2f} with sampled ones",
        f"train it: worldmodel train-agent {config.env_id} --vae {config.vae} --algo {study.user_attrs['algo']} "
        f"--hyperparams {path} [--timesteps N]",
    ]
    body = yaml.safe_dump({config.env_id: best.user_attrs["recipe"]}, sort_keys=False)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"# {line}\n" for line in header) + body)


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial: number, state, score, times, ``params_*``, scalar ``user_attrs_*`` and the trial it
    retries (the columns of Optuna's ``trials_dataframe``, without needing pandas)."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        retried = trial.system_attrs.get("failed_trial")  # set by RetryHeartbeatStaleTrialCallback
        row: dict[str, Any] = {
            "number": trial.number,
            "state": trial.state.name,
            "value": trial.value,
            "datetime_start": trial.datetime_start,
            "datetime_complete": trial.datetime_complete,
            "duration_s": None if trial.duration is None else round(trial.duration.total_seconds(), 2),
            "retried_trial": retried,
        }
        row.update({f"params_{k}": v for k, v in trial.params.items()})
        row.update({f"user_attrs_{k}": v for k, v in trial.user_attrs.items() if not isinstance(v, dict)})
        rows.append(row)
    return rows


def write_trials_csv(study: optuna.Study, path: Path) -> None:
    rows = trial_rows(study)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def summary(study: optuna.Study, config: TuneConfig) -> str:
    """A few lines: trials by state, the best trial's scores, and where the outputs are."""
    counts = {state.name.lower(): _count(study, state) for state in TrialState if _count(study, state)}
    lines = [f"study {study.study_name}: {', '.join(f'{n} {s}' for s, n in counts.items())} trials "
             f"of {config.budget_frames} env frames"]  # fmt: skip
    if not counts.get("complete"):
        return "\n".join([*lines, "no trial has completed yet: no best.yaml"])
    best = study.best_trial
    sampled = best.user_attrs.get("sampled_mean_return", float("nan"))
    lines += [
        f"best: trial {best.number}, mean return {best.value:.2f} (deterministic), {sampled:.2f} (sampled actions)",
        f"  params: {best.params}",
        f"recipe: {config.out_dir / BEST_FILE}  trials: {config.out_dir / TRIALS_CSV}",
    ]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``worldmodel tune``."""
    add_config_arguments(parser, TuneConfig, positional=("env_id",))


def run(args: argparse.Namespace) -> int:
    """``worldmodel tune ENV_ID --vae VAE --algo ALGO --out OUT ...``: run or continue the study, print its summary."""
    config = config_from_args(TuneConfig, args)
    print(summary(tune(config), config))
    return 0
