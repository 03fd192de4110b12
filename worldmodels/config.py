"""The single source of defaults: typed dataclasses, strict YAML merge, dotted --set overrides.

The defaults are the laptop recipe (2 CPU cores, no GPU: the recipe behind the laptop rows of
the README). A config file holds overrides only; every key must name a field below, and every
value must have the field's type. Bundled configs live in ``worldmodels/configs/*.yaml``; a
recipe is the list of config names a run starts from (RECIPES), recorded in run.yaml.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


@dataclass
class CollectConfig:
    rollouts: int = 120
    """Rollouts collected per env and round."""
    max_steps: int = 500
    """Cap on the length of one collected rollout (env steps)."""
    min_frames: int = 50_000
    """After `rollouts`, go on collecting rollouts until the round holds at least this many
    frames (0 = off), so an env whose exploring episodes end early (Breakout: ~180 steps) gives
    V as much data as one that runs to max_steps. At most 10 x rollouts in all."""
    policy: str = "explore"
    """'explore' (random actions with momentum, forward bias on CarRacing) or 'random'."""
    noise: float = 0.3
    """Action noise when later rounds collect with the current controller."""


@dataclass
class VAEConfig:
    kind: str = "conv"
    """conv: the paper's convolutional VAE. keypoints: a spatial autoencoder whose z is the image
    coordinates of z_dim / 2 learned feature maps, so an object it tracks is linear in z, as C is
    (models/vae.py; an autoencoder: kl_tolerance, ae_warmup do not apply)."""
    z_dim: int = 32
    """Size of the latent z."""
    epochs: int = 5
    """Passes over the collected frames."""
    finetune_epochs: int = -1
    """Epochs in rounds after the first, which start from the previous round's V and train on all
    the data so far (about twice round 0's in round 1). -1 = `epochs`; 0 keeps round 0's V as it
    is, so z keeps its meaning for the controller (only M learns from the new data)."""
    batch_size: int = 64
    """Frames per V step; a GPU takes larger batches at little cost a batch."""
    lr: float = 5e-4
    """Adam's step; with few epochs a larger step than the paper's 1e-4."""
    kl_tolerance: float = 0.5
    """Free bits: the KL term is floored at kl_tolerance * z_dim per frame."""
    object_weight: float = 10.0
    """Atari only: pixels that differ from the data's median frame (ball, paddles, bricks) weigh
    1 + object_weight in the reconstruction loss, so V keeps the 1-2 pixel ball. 0 = plain L2."""
    motion_weight: float = 50.0
    """Atari only: pixels that differ from the previous frame of the same rollout (the ball, a
    moving paddle) weigh motion_weight more, on top of object_weight. Without it V can keep the
    still bricks and lose the ball. 0 = off."""
    ae_warmup: int = 1000
    """Atari only: the first ae_warmup batches train V as a plain autoencoder (z = mu, no KL).
    Sampling noise can otherwise hide the small objects' gradient, and V outputs the mean
    frame for thousands of batches. 0 = a VAE from the first batch."""
    shuffle_files: int = 32
    """Rollout files held in memory at once by the streaming loader (frames are shuffled across them)."""


@dataclass
class MDNRNNConfig:
    hidden: int = 128
    """LSTM units (C on [z, h] has (z_dim + hidden + 1) x actions parameters)."""
    gaussians: int = 5
    """Mixture components per latent dimension."""
    seq_len: int = 64
    """Transitions in each training window (random windows of the rollouts, each from a zero state)."""
    batch_size: int = 32
    """Sequences per M step."""
    epochs: int = 10
    """Passes over the encoded rollouts."""
    lr: float = 1e-3
    """Adam's step."""
    grad_clip: float = 1.0
    """Largest gradient norm of an M step."""
    reward_weight: float = 1.0
    """Weight of the reward-prediction loss (0 disables the head's loss)."""
    done_weight: float = 1.0
    """Weight of the done-prediction loss."""


@dataclass
class ControllerConfig:
    pop_size: int = 16
    """CMA-ES population."""
    rollouts: int = 4
    """Episodes per candidate; fitness is their mean return."""
    sigma0: float = 0.1
    """CMA-ES's initial step size around the zero mean."""
    min_rel_step: float = 0.0
    """Floor on CMA-ES's step relative to its mean, sigma * sqrt(n) / |mean| (0 = no floor).
    For discrete actions C is argmax(W x + b): scaling every parameter changes no action, so a
    step only means something relative to |mean|. Off by default: a shrinking step is usually
    CMA-ES converging, not stalling."""
    max_steps: int = 500
    """Cap on a training episode (env steps); a stalled controller cannot eat the budget."""
    max_rewards: int = 0
    """Also end a training episode after this many nonzero rewards (0 = off). Pong pays +-1 per
    point, so with k the fitness is points won minus lost over the first k points; a slice of
    max_steps steps also pays for rallies that only last longer before the point is lost."""
    max_lives: int = 0
    """Also end a training episode when it has lost this many lives (0 = off; envs that report
    lives, as Atari's do). With 1 the fitness is the points of one life: a miss then costs every
    point the slice had left, where in a slice of several lives it costs only the steps until the
    next serve."""
    stall_steps: int = 0
    """Also end a training episode when this many env steps pass without a nonzero reward
    (0 = off), adding stall_penalty to its return: in Pong a rally that never ends is then a cost
    the fitness sees, not a free draw, and it stops eating the step budget."""
    stall_penalty: float = 0.0
    """What a stall (stall_steps) adds to the episode's return; -1 counts it as a lost point."""
    slots: int = 64
    """Episodes run in lockstep (one batch); fixed by the config so results do not depend on
    workers. 64 holds a whole generation of 16 x 4 episodes."""
    groups: int = 2
    """The slots form this many lane groups (one batch each): while the workers step some, the
    master acts for another. Fixed by the config like the slots. More groups mean smaller
    batches: on the GPU machine (128 lanes, 16 workers) 4 and 8 groups ran at 85% and 45% of 2's
    rate, since the master pays a fixed cost per batch; on 2 cores 2 and 4 were even."""
    use_h: bool = True
    """Feed M's hidden state h to C (False = the paper's 'V only' ablation)."""
    dz: bool = False
    """Also feed z_t - z_{t-1} to C: a controller that sees one frame's z cannot tell where a
    ball is going; the difference of two frames' z carries its motion (0 at an episode's start)."""
    prev_actions: int = 0
    """Also feed C its own last k actions (M's encoding: one-hot or the box vector), for games
    whose response lags the input (Breakout's paddle has momentum from its last few inputs)."""
    hidden: int = 0
    """C's tanh hidden units (0: linear, a = W x + b, the paper's). Moving toward where a ball
    will be is not linear in z; past 2,000 parameters CMA-ES goes diagonal."""
    normalize: bool = False
    """CMA-ES searches W, b for standardized inputs (z and h minus their mean over the collected
    data, over their std), as ARS does; the saved controller has the standardization folded in
    (into C's first layer). For inputs of very different scales, where a step of one sigma
    moves some weights far more than others."""
    whiten: bool = False
    """As normalize, with the inputs' covariance: CMA-ES searches W, b for inputs rotated onto the
    data's principal axes, each over its std (at least 0.01), folded in the same way. A feature
    that z spreads over directions of little variance (Breakout's ball column) then costs the
    search no more than the main ones. Wins over normalize where both are on."""
    moving_inputs: int = 0
    """0: C sees all its inputs. K: only the K that change most from one step to the next over
    the collected data (mean |x_t - x_{t-1}|), standardized as normalize does; the rest get
    weight 0 (folded into the saved C, so best.pt is a plain C). Later rounds keep round 0's
    choice, so CMA-ES goes on searching the same weights. For a V whose z holds the moving
    objects' coordinates apart (vae.kind: keypoints), CMA-ES then searches over those alone
    instead of beside many inputs that only add noise to the actions."""


@dataclass
class DreamConfig:
    gens: int = 0
    """CMA-ES generations trained inside M (the dream) before the real-env generations."""
    rollouts: int = 16
    """Dream episodes per candidate."""
    max_steps: int = 1000
    """Cap on a dream episode in env steps (M's done head usually ends it sooner); M steps once
    per action, so with an action repeat of k a dream runs at most max_steps / k of M's steps."""
    temperature: float = 1.15
    """tau: mixture sampling temperature; low tau lets C exploit M, ~1.15 transferred in the paper."""


@dataclass
class EvalConfig:
    episodes: int = 8
    """Episodes per eval snapshot."""
    max_steps: int = 0
    """Cap on an eval episode; 0 = the env's own limit."""
    confirm_episodes: int = 100
    """Episodes of the confirmation evaluation that decides whether a target is reached."""
    stop_at_target: bool = True
    """A confirmed target ends the env's training (the env is solved). false: the env is marked
    solved and training goes on to the budget (a workstation's hour toward the paper's 906): no
    more confirmations, and the pick among finalists still chooses best.pt at the end."""
    final_episodes: int = 100
    """Episodes of the final evaluation of best.pt on unseen seeds."""
    finalists: int = 3
    """At the end of each round's controller stage, best.pt, the next best snapshots of the round
    (this many in all) and CMA-ES's mean are scored again over pick_episodes episodes, all on the
    same seeds, and the highest becomes best.pt: a snapshot of 8 episodes that was only lucky
    is not what gets reported. 0 turns the pick off."""
    video_steps: int = 3000
    """At the end of each env, one episode of best.pt on the official env is recorded to
    <env>/best.mp4 (what wm-play --record writes), capped at this many env steps; 0 = no video."""
    pick_episodes: int = 32
    """Episodes per finalist in that pick (eval.renderer, seeds 1.25e9 + i)."""
    renderer: str = "fast"
    """CarRacing renderer of the eval snapshots, which only pick the best controller: fast,
    exact or official. The confirmation of a target, the final evaluation and wm-play always
    use the official env, so every reported score is the official env's."""


@dataclass
class TrainConfig:
    envs: list[str] = field(default_factory=lambda: ["all"])
    max_gens: int = 200
    """CMA-ES generations per env: an upper bound beside the env-step budget."""
    eval_every: int = 10
    """Generations between eval snapshots (and one at generation 0): the candidates for best.pt."""
    patience: int = 0
    """Generations without a better best fitness before early stopping; 0 (the default) disables
    it: under a step budget early stopping only leaves budget unused."""
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    """Environment worker processes; 0 = one per core (at most 16)."""
    backend: str = "local"
    ray_address: str = ""
    time_budget: float = 0.0
    """Minutes of wall-clock per env (0 = no limit)."""
    max_env_steps: int = 5_000_000
    """Env steps per env, collection and controller training (0 = no limit); evaluations are
    counted beside it, not in it. A budget in steps, not minutes, so a loaded machine changes how
    long a run takes, not its result. Per env in env_overrides (CarRacing's steps are cheaper)."""
    stages: list[str] = field(default_factory=lambda: ["collect", "vae", "encode", "mdnrnn", "controller"])
    rounds: int = 1
    """Rounds of collect -> V -> M -> C; later rounds collect with the current controller."""
    live: bool = False
    """Show the current best agent in a window while training (its own process)."""
    tensorboard: bool = False
    """Also write TensorBoard scalars to <out>/tensorboard (needs the tensorboard package)."""
    track: bool = False
    """Also log the scalars to Weights & Biases (needs the wandb package; WANDB_PROJECT,
    WANDB_ENTITY and WANDB_MODE=offline as W&B reads them)."""
    action_repeat: int = 4
    """Env steps each action of the agent (explorer, C) is held for; V, M and C see every
    action_repeat-th frame, and M steps once per action. Not for Atari, whose v5 envs already
    hold each action for 4 frames (ignored there). 4 by default: CarRacing's C runs ~5x the env
    steps/s on 2 cores. On CarRacing's fast renderer the held frames
    are not drawn, so a held step costs the physics only. Stored in best.pt: evaluation and
    wm-play hold actions the same way, on the official env."""
    renderer: str = "fast"
    """CarRacing renderer for collection and controller training: fast, exact or official.
    On Atari, fast and exact reset a seeded episode by restoring the emulator state the official
    reset reaches instead of reloading the ROM (the same frames; envs/ale_reset.py). Eval
    snapshots use eval.renderer; the final evaluation and wm-play always use the official env."""
    collect: CollectConfig = field(default_factory=CollectConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    mdnrnn: MDNRNNConfig = field(default_factory=MDNRNNConfig)
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    dream: DreamConfig = field(default_factory=DreamConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    env_overrides: dict[str, dict] = field(default_factory=lambda: copy.deepcopy(LAPTOP_ENV_OVERRIDES))
    """Settings for one env only, on top of the rest: {env: {key: value}}, env as --envs names
    one env (carracing, pong, breakout or a Gymnasium id), keys as elsewhere in the config
    (nested or dotted), limited to ENV_KEYS. A key that a later config file, --set or flag sets
    for every env wins over a config file's override of it, so `--set controller.max_steps=N`
    means every env; `--set env_overrides.carracing.controller.max_steps=N` sets one."""


# The laptop recipe's settings for one env each (the rest of the recipe is the defaults above).
LAPTOP_ENV_OVERRIDES: dict[str, dict] = {
    "carracing": {
        "max_env_steps": 24_000_000,  # ~105 min of training on 2 cores (held actions step cheaply)
        "controller": {
            "max_steps": 1000,  # training episodes as long as the evaluation's: fitness sees the whole track
            "rollouts": 8,  # 8 tracks a candidate: the failures are rare track features 4 tracks seldom show
        },
    },
    "pong": {
        "max_env_steps": 2_400_000,
        "controller": {
            "max_rewards": 5,  # fitness = points won minus lost over the first 5 points
            "max_steps": 3000,  # room for 5 points when the ball comes back
        },
    },
    "breakout": {"max_env_steps": 4_700_000},
}

# Keys that say where and what a run trains, not how: no recipe sets them.
NOT_RECIPE_KEYS = ("envs", "seed", "device", "workers", "backend", "ray_address", "stages", "live", "tensorboard",
                   "track")

# A recipe: the bundled configs a run starts from when no --config is given, chosen by the
# hardware found; recorded in run.yaml, so a resume reuses it on any machine.
RECIPES = {"laptop": [], "gpu": ["gpu"]}
ALIASES = {"quick": "laptop", "default": "gpu"}  # the names these recipes had before


# What env_overrides may set: what the stages read for the env being trained. Run-level keys
# (max_gens, eval_every, patience, eval.*, workers, ...) shape the hooks and the loop of every env.
ENV_KEYS = ("collect", "vae", "mdnrnn", "controller", "dream", "action_repeat", "renderer",
            "time_budget", "max_env_steps")
STAGES = ("collect", "vae", "encode", "mdnrnn", "controller")
# Keys that may change between a run and its resume without invalidating what was trained.
RESUMABLE_KEYS = {
    "envs", "max_gens", "eval_every", "patience", "device", "workers", "backend", "ray_address",
    "time_budget", "max_env_steps", "stages", "live", "tensorboard", "track", "eval.confirm_episodes",
    "eval.final_episodes", "eval.episodes", "eval.finalists", "eval.pick_episodes", "eval.stop_at_target",
    "eval.video_steps",
}

# Where a run runs, not what it trains: a resume takes them from the command and the defaults,
# not from run.yaml (a run started with --live or 16 workers may resume headless on 2 cores).
MACHINE_KEYS = ("device", "workers", "backend", "ray_address", "live")


def bundled_configs() -> list[str]:
    """The bundled config names, aliases included."""
    files = [p.name[:-5] for p in resources.files("worldmodels").joinpath("configs").iterdir()
             if p.name.endswith(".yaml")]
    return sorted(files + list(ALIASES))


def _bundled_text(name: str) -> str:
    return resources.files("worldmodels").joinpath("configs").joinpath(f"{ALIASES.get(name, name)}.yaml").read_text()


def describe_configs() -> list[tuple[str, str]]:
    """(name, what it is) for each bundled config: the first line of its file's comment."""
    out = []
    for name in bundled_configs():
        if name in ALIASES:
            out.append((name, f"{ALIASES[name]}, by its earlier name"))
            continue
        first = next((line.lstrip("# ").strip() for line in _bundled_text(name).splitlines()
                      if line.startswith("#")), "")
        out.append((name, first))
    return out


def _resolve_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check_value(key: str, value: Any, typ: Any) -> Any:
    origin = typing.get_origin(typ)
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in value.items()):
            raise ConfigError(f"config key '{key}' must map env names to settings, "
                              f"e.g. {{carracing: {{controller: {{max_steps: 1000}}}}}}, got {value!r}")
        return value
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"config key '{key}' must be a list of strings, got {value!r}")
        return value
    if typ is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
        return value
    if typ is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
        return value
    raise ConfigError(f"config key '{key}' has an unsupported type")  # pragma: no cover


def apply_overrides(cfg: Any, overrides: dict, prefix: str = "") -> None:
    """Merge a nested mapping into a dataclass in place; unknown keys and wrong types raise."""
    if not isinstance(overrides, dict):
        raise ConfigError(f"config section '{prefix or '<top>'}' must be a mapping, got {overrides!r}")
    types = _resolve_types(type(cfg))
    for key, value in overrides.items():
        dotted = f"{prefix}{key}"
        if key not in types:
            known = ", ".join(sorted(types))
            raise ConfigError(f"unknown config key '{dotted}' (known here: {known})")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current):
            apply_overrides(current, value, prefix=f"{dotted}.")
        elif typing.get_origin(types[key]) is dict:  # env_overrides: merged, env by env
            merged = copy.deepcopy(current)
            for name, settings in _check_value(dotted, value, types[key]).items():
                where = f"{dotted}.{name}."
                merged[name] = _deep_merge(merged.get(name, {}), _undot(settings, where), where)
            setattr(cfg, key, merged)
        else:
            setattr(cfg, key, _check_value(dotted, value, types[key]))


def _undot(settings: dict, prefix: str = "env_overrides.") -> dict:
    """{'controller.max_steps': 1000} -> {'controller': {'max_steps': 1000}}, nested maps merged."""
    out: dict = {}
    for key, value in settings.items():
        value = _undot(value, f"{prefix}{key}.") if isinstance(value, dict) else value
        for part in reversed(str(key).split(".")[1:]):
            value = {part: value}
        head = str(key).split(".")[0]
        if isinstance(value, dict) and isinstance(out.get(head, {}), dict):
            out[head] = _deep_merge(out.get(head, {}), value, f"{prefix}{head}.")
        elif head in out:
            raise ConfigError(f"config key '{prefix}{head}' is given twice, once as a value and once as a section")
        else:
            out[head] = value
    return out


def _deep_merge(base: dict, extra: dict, prefix: str = "env_overrides.") -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value, f"{prefix}{key}.")
        elif key in out and (isinstance(value, dict) or isinstance(out[key], dict)):
            raise ConfigError(f"config key '{prefix}{key}' is given twice, once as a value and once as a section")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _drop_keys(env_overrides: dict, dotted_keys: set[str]) -> dict:
    """env_overrides without the keys a later layer sets for every env."""
    out = {}
    for name, settings in env_overrides.items():
        kept = {k: v for k, v in flatten(settings).items() if k not in dotted_keys}
        out[name] = _undot(kept)
    return out


def effective(data: dict, matches: Callable[[str], bool]) -> dict:
    """One env's settings, the rule in one place: a config as a dict (a TrainConfig's, or a
    run.yaml as read, of any version) with the env_overrides whose name matches(name) applied,
    in their order; a flat dict of dotted keys, env_overrides left out. env_config is the same
    as a TrainConfig."""
    flat = {k: v for k, v in flatten(data).items() if not k.startswith("env_overrides.")}
    for name, settings in (data.get("env_overrides") or {}).items():
        if isinstance(settings, dict) and matches(name):
            flat.update(flatten(_undot(settings)))
    return flat


def env_config(cfg: TrainConfig, matches: Callable[[str], bool]) -> TrainConfig:
    """The config of one env (effective(), type-checked as a TrainConfig); its env_overrides are
    kept, so the result still says what differs between envs."""
    out = from_dict(_undot(effective(to_dict(cfg), matches), prefix=""))
    out.env_overrides = copy.deepcopy(cfg.env_overrides)
    return out


def load_yaml(name_or_path: str) -> dict:
    """A bundled config name (laptop, gpu, smoke, paper; quick and default are aliases) or a
    path to a YAML file."""
    path = Path(name_or_path)
    if ALIASES.get(name_or_path, name_or_path) == "laptop":  # the defaults, as a layer like any file's
        data = to_dict(TrainConfig())
        return {k: v for k, v in data.items() if k not in NOT_RECIPE_KEYS}
    if name_or_path in bundled_configs():
        text = _bundled_text(name_or_path)
        source = f"bundled config '{name_or_path}'"
    elif path.is_file():
        text = path.read_text()
        source = str(path)
    else:
        raise ConfigError(f"config '{name_or_path}' is neither a bundled config "
                          f"({', '.join(bundled_configs())}) nor a YAML file")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a mapping of config keys")
    return data


def parse_set(item: str) -> dict:
    """'controller.pop_size=8' -> {'controller': {'pop_size': 8}} (value parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got '{item}'")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def build_config(config_names: list[str] | None = None, sets: list[str] | None = None,
                 flags: dict | None = None, base: dict | None = None) -> TrainConfig:
    """Defaults <- config files in order <- --set items <- explicit command-line flags.

    base (a resume: the config a run.yaml recorded) takes the place of the defaults, so what the
    command does not say stays as the run had it. env_overrides: a key that a later file, a
    --set or a flag sets for every env wins over a config file's override of it; overrides given
    with --set win over everything."""
    cfg = TrainConfig()
    if base is not None:
        cfg.env_overrides = {}  # the recorded overrides, not the defaults' merged with them
        apply_overrides(cfg, base)
    from_files: dict = copy.deepcopy(cfg.env_overrides)  # the defaults' per-env settings: a file's
    for name in config_names or []:
        layer = load_yaml(name)
        from_files = _drop_keys(from_files, set(flatten(layer)))
        cfg.env_overrides = {}
        apply_overrides(cfg, layer)
        from_files = _merge_overrides(from_files, cfg.env_overrides)
    from_command_line: dict = {}
    for layer in [parse_set(item) for item in sets or []] + ([flags] if flags else []):
        from_files = _drop_keys(from_files, set(flatten(layer)))
        cfg.env_overrides = from_command_line
        apply_overrides(cfg, layer)
        from_command_line = cfg.env_overrides
    merged = _merge_overrides(from_files, from_command_line)
    cfg.env_overrides = {name: settings for name, settings in merged.items() if settings}
    validate(cfg)
    return cfg


def _merge_overrides(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for name, settings in b.items():
        out[name] = _deep_merge(out.get(name, {}), settings)
    return out


BIG = 10**12
# The range of every numeric key, checked when a config is built (low <= value <= high; floats
# must also be finite). Sizes are capped where more could not fit in memory or would never end,
# so a slip of the keyboard is one error line before any work, not a traceback hours in.
RANGES: dict[str, tuple[float, float]] = {
    "max_gens": (0, 10**7), "eval_every": (1, 10**7), "patience": (0, 10**7),
    "seed": (0, 2**32 - 1), "workers": (0, 1024), "time_budget": (0, 10**7), "max_env_steps": (0, BIG),
    "rounds": (1, 100), "action_repeat": (1, 1000),
    "collect.rollouts": (1, 10**6), "collect.max_steps": (1, 10**7), "collect.min_frames": (0, 10**9),
    "collect.noise": (0, 10),
    "vae.z_dim": (1, 4096), "vae.epochs": (0, 10**6), "vae.finetune_epochs": (-1, 10**6),
    "vae.batch_size": (1, 65536), "vae.lr": (1e-12, 10), "vae.kl_tolerance": (0, 1000),
    "vae.object_weight": (0, 1e6), "vae.motion_weight": (0, 1e6), "vae.ae_warmup": (0, 10**9),
    "vae.shuffle_files": (1, 100000),
    "mdnrnn.hidden": (1, 16384), "mdnrnn.gaussians": (1, 256), "mdnrnn.seq_len": (2, 100000),
    "mdnrnn.batch_size": (1, 65536), "mdnrnn.epochs": (0, 10**6), "mdnrnn.lr": (1e-12, 10),
    "mdnrnn.grad_clip": (0, 1e6), "mdnrnn.reward_weight": (0, 1e6), "mdnrnn.done_weight": (0, 1e6),
    "controller.pop_size": (2, 100000), "controller.rollouts": (1, 100000),
    "controller.sigma0": (1e-12, 1e6), "controller.min_rel_step": (0, 1e6),
    "controller.max_steps": (1, 10**8), "controller.max_rewards": (0, 10**6), "controller.max_lives": (0, 10**6),
    "controller.stall_steps": (0, 10**8), "controller.stall_penalty": (-1e6, 1e6), "controller.slots": (1, 65536),
    "controller.groups": (1, 1024), "controller.prev_actions": (0, 64), "controller.hidden": (0, 4096),
    "controller.moving_inputs": (0, 10**6),
    "dream.gens": (0, 10**7), "dream.rollouts": (1, 100000), "dream.max_steps": (1, 10**8),
    "dream.temperature": (1e-6, 100),
    "eval.episodes": (1, 10**6), "eval.max_steps": (0, 10**8), "eval.confirm_episodes": (1, 10**6),
    "eval.final_episodes": (1, 10**6), "eval.finalists": (0, 1000), "eval.pick_episodes": (0, 10**6),
    "eval.video_steps": (0, 10**7),
}


def _fmt(v: float) -> str:
    return f"{v:,}" if isinstance(v, int) else f"{v:g}"


def check_ranges(cfg: TrainConfig) -> None:
    """Every numeric key finite and within RANGES; the first offender is one error line."""
    for key, value in flatten(to_dict(cfg)).items():
        if key.startswith("env_overrides.") or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"config key '{key}' must be a finite number, got {value}")
        low, high = RANGES.get(key, (-math.inf, math.inf))
        if not low <= value <= high:
            raise ConfigError(f"config key '{key}' must be {_fmt(low)} to {_fmt(high)}, got {value!r}")


# Keys are range-checked one at a time (RANGES); their products are checked here: V, M and C's
# parameter counts and the memory of each stage's largest step, estimated from the config alone
# (coarsely: the weights with Adam's state, a batch's activations, CMA-ES's population), must
# stay under MEMORY_LIMIT. The bundled recipes need under 4 GiB (paper's M, the largest); a
# config past the limit would run out of memory after collect, so it is one error line before
# any work.
MEMORY_LIMIT = 64 * 2**30
ACTION_DIM_BOUND = 18  # the largest action vector of the envs (Atari's full set, one-hot)
_VAE_CONVS = (3 * 32 * 16 + 32 + 32 * 64 * 16 + 64 + 64 * 128 * 16 + 128 + 128 * 256 * 16 + 256
              + 1024 * 128 * 25 + 128 + 128 * 64 * 25 + 64 + 64 * 32 * 36 + 32 + 32 * 3 * 36 + 3)
_VAE_FLOATS_PER_FRAME = 2 * (64 * 64 * 3 + 32 * 31 * 31 + 64 * 14 * 14 + 128 * 6 * 6 + 256 * 2 * 2 + 1024
                             + 128 * 5 * 5 + 64 * 13 * 13 + 32 * 30 * 30 + 64 * 64 * 3)  # outputs and ReLUs
VAE_KINDS = ("conv", "keypoints")  # models/vae.py's VAE_KINDS (config stays free of torch)
CMA_FULL_MAX = 2000  # CMA-ES keeps a full covariance up to this many parameters (stages/controller.py)


def model_sizes(cfg: TrainConfig, action_dim: int = ACTION_DIM_BOUND) -> dict[str, int]:
    """Parameters of V, M and C as cfg builds them (models/*.py) for an env with action_dim."""
    z, h, g, c = cfg.vae.z_dim, cfg.mdnrnn.hidden, cfg.mdnrnn.gaussians, cfg.controller
    c_in = z * (2 if c.dz else 1) + (h if c.use_h else 0) + c.prev_actions * action_dim
    layers = [(c.hidden, c_in), (action_dim, c.hidden)] if c.hidden else [(action_dim, c_in)]
    return {
        "V": _VAE_CONVS + 2 * (1024 * z + z) + z * 1024 + 1024,
        "M": 4 * h * (z + action_dim) + 4 * h * h + 8 * h + (h + 1) * (3 * z * g + 2),
        "C": sum(o * i + o for o, i in layers),
    }


def memory_needs(cfg: TrainConfig) -> list[tuple[str, int, str]]:
    """(what, bytes, the keys behind it) for each stage's largest step, float32 tensors."""
    n = model_sizes(cfg)
    z, g, m = cfg.vae.z_dim, cfg.mdnrnn.gaussians, cfg.mdnrnn
    adam = 16  # weights, gradients and Adam's two moments: 4 floats of 4 bytes a parameter
    # M's step: the LSTM's gates and states and the mixture's outputs with gmm_nll's temporaries
    # (about 6 tensors of [B, T, z, G]), kept for the backward pass.
    per_step = 6 * m.hidden + 6 * 3 * z * g
    pop = cfg.controller.pop_size
    cma = 8 * pop * n["C"] * 3 + (8 * 3 * n["C"] ** 2 if n["C"] <= CMA_FULL_MAX else 8 * 4 * n["C"])
    return [
        ("training V", adam * n["V"] + 4 * 2 * cfg.vae.batch_size * _VAE_FLOATS_PER_FRAME,
         f"{n['V']:,} parameters, from vae.z_dim, vae.batch_size"),
        ("training M", adam * n["M"] + 4 * 2 * m.batch_size * m.seq_len * per_step,
         f"{n['M']:,} parameters, from vae.z_dim, mdnrnn.hidden, mdnrnn.gaussians, mdnrnn.batch_size, "
         "mdnrnn.seq_len"),
        ("training C", 4 * (n["V"] + n["M"]) + cma + 4 * pop * n["C"],
         f"{n['C']:,} parameters x {pop} candidates, from vae.z_dim, mdnrnn.hidden, controller.hidden, "
         "controller.pop_size"),
    ]


def check_sizes(cfg: TrainConfig) -> None:
    """Every stage's memory estimate under MEMORY_LIMIT; the first over it is one error line."""
    for what, need, why in memory_needs(cfg):
        if need > MEMORY_LIMIT:
            raise ConfigError(f"{what} would need about {need / 2**30:,.0f} GiB ({why}), more than the "
                              f"{MEMORY_LIMIT // 2**30} GiB a run may ask for; lower those keys")


def validate(cfg: TrainConfig) -> None:
    check_ranges(cfg)
    check_sizes(cfg)
    checks = [
        (cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:"),
         "device must be auto, cpu or cuda"),
        (cfg.backend in ("local", "ray"), "backend must be local or ray"),
        (cfg.collect.policy in ("explore", "random"), "collect.policy must be explore or random"),
        (cfg.vae.kind in VAE_KINDS, f"vae.kind must be {' or '.join(VAE_KINDS)}"),
        (cfg.vae.kind != "keypoints" or cfg.vae.z_dim % 2 == 0,
         "vae.z_dim must be even with vae.kind keypoints (an x and a y for each keypoint)"),
        (not (cfg.controller.whiten and cfg.controller.moving_inputs),
         "controller.whiten and controller.moving_inputs cannot both be on (choose one)"),
        (cfg.renderer in ("fast", "exact", "official"), "renderer must be fast, exact or official"),
        (cfg.eval.renderer in ("fast", "exact", "official"), "eval.renderer must be fast, exact or official"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    bad = [s for s in cfg.stages if s not in STAGES]
    if bad:
        raise ConfigError(f"unknown stage(s) {', '.join(bad)}; stages are {', '.join(STAGES)}")
    if not cfg.envs:
        raise ConfigError("envs must name at least one environment")
    for name, settings in cfg.env_overrides.items():
        for key in flatten(_undot(settings)):
            if key.split(".")[0] not in ENV_KEYS:
                raise ConfigError(f"env_overrides.{name}.{key} cannot differ between envs; per env: "
                                  f"{', '.join(ENV_KEYS)}")
        one = copy.deepcopy(cfg)
        one.env_overrides = {}
        apply_overrides(one, settings, prefix=f"env_overrides.{name}.")
        try:
            validate(one)
        except ConfigError as exc:
            raise ConfigError(f"env_overrides.{name}: {exc}") from None


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(data: dict) -> TrainConfig:
    cfg = TrainConfig()
    apply_overrides(cfg, data)
    return cfg


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def changed_training_keys(old: dict, new: dict, matchers: list | None = None) -> list[str]:
    """Keys whose change would alter what an earlier run already trained.

    A key that the earlier run's config lacks (added in a later version) counts as its default.
    With matchers (one matches(name) per env of the run), each env's own settings are compared,
    env_overrides applied: an override of an env the run does not train changes nothing.
    """
    # (an env_overrides key a run lacks is no override, not the default's)
    base = {k: v for k, v in flatten(to_dict(TrainConfig())).items() if not k.startswith("env_overrides.")}
    if matchers is None:
        a, b = {**base, **flatten(old)}, flatten(new)
        return sorted(k for k in set(a) | set(b) if not _resumable(k) and a.get(k) != b.get(k))
    changed: set[str] = set()
    for matches in matchers:
        a, b = {**base, **effective(old, matches)}, {**base, **effective(new, matches)}
        changed |= {k for k in set(a) | set(b) if not _resumable(k) and a.get(k) != b.get(k)}
    return sorted(changed)


def _resumable(dotted: str) -> bool:
    if dotted.startswith("env_overrides."):  # env_overrides.<env>.<key>
        dotted = dotted.split(".", 2)[2] if dotted.count(".") >= 2 else dotted
    return dotted in RESUMABLE_KEYS
