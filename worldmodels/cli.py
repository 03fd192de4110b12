"""Thin entry points: parse -> config -> call the library. Bad input: one line, exit 2."""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn

from .errors import UserError


class OneLineParser(argparse.ArgumentParser):
    """argparse errors as one line on stderr and exit status 2 (no usage dump); --version."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from . import __version__

        self.add_argument("--version", action="version", version=f"%(prog)s {__version__}")

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt  # a scheduler's SIGTERM ends wm-play and wm-report as Ctrl-C does


class _ConsoleHandler(logging.Handler):
    """Log records as console lines: timestamped, and above the progress bars on a terminal."""

    def emit(self, record: logging.LogRecord) -> None:
        from .console import log_line

        try:
            log_line(self.format(record))
        except Exception:  # a log line must never end a run
            self.handleError(record)


def _setup_logging() -> None:
    root = logging.getLogger()
    if not any(isinstance(h, _ConsoleHandler) for h in root.handlers):
        handler = _ConsoleHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.INFO)


def _run_guarded(fn) -> int:
    """Run a command: a UserError is one line and exit 2; Ctrl-C or SIGTERM is exit 130 (wm-train
    installs its own handlers, which finish the step and exit 0)."""
    _setup_logging()
    prog = Path(sys.argv[0]).name
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        return fn() or 0
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def _same_terminal() -> bool:
    """stdout and stderr are one terminal (then what goes to stdout is already on screen)."""
    try:
        return sys.stdout.isatty() and sys.stderr.isatty() and os.path.samestat(
            os.fstat(sys.stdout.fileno()), os.fstat(sys.stderr.fileno()))
    except (OSError, ValueError, AttributeError):
        return False


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of minutes") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0 minutes, got {text}")
    return value


# -- wm-train --------------------------------------------------------------------------------
def _configs_epilog() -> str:
    from .config import describe_configs

    lines = ["bundled configs (--config NAME):"]
    lines += [f"  {name:<8} {what}" for name, what in describe_configs()]
    return "\n".join(lines)


TRAIN_EXAMPLES = """examples:
  wm-train --envs all --max-gens 200 --eval-every 10    the curriculum, recipe for this machine
  wm-train --config smoke --out runs/smoke              every stage, tiny (about a minute)
  wm-train --envs carracing --max-env-steps 5000000     one env, a smaller step budget
  wm-train --envs pong --print-config                   what a command would train with
  wm-train --out runs/a                                 rerun: resumes where runs/a stopped"""


def train_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="wm-train", description="Train World Models agents on a curriculum of envs.\n\n"
                      "With no --config the recipe fits the machine: laptop (CPU) or gpu (a CUDA\n"
                      "device found); a resumed run keeps the recipe it started with.",
                      formatter_class=argparse.RawDescriptionHelpFormatter,
                      epilog=f"{_configs_epilog()}\n\n{TRAIN_EXAMPLES}")
    recipe = "(default: from the recipe)"
    what = p.add_argument_group("what to train")
    what.add_argument("--envs", metavar="LIST", help="all, or a comma list of pong, breakout, carracing or "
                      "Gymnasium ids (default: all = pong, breakout, carracing)")
    what.add_argument("--config", action="append", default=[], metavar="NAME_OR_PATH",
                      help="bundled config (listed below) or YAML file, instead of the machine's recipe; "
                           "repeatable, later wins")
    what.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override one config key (keys: worldmodels/config.py)")
    what.add_argument("--seed", type=_positive_int, metavar="S", help="training seed (default 0)")
    what.add_argument("--stages", metavar="LIST",
                      help="comma list of collect,vae,encode,mdnrnn,controller (default: all)")
    what.add_argument("--from", dest="from_dir", metavar="RUN_DIR", help="reuse data, V and M of an earlier run")
    budget = p.add_argument_group("budget")
    budget.add_argument("--max-env-steps", type=_positive_int, metavar="N",
                        help=f"env steps per env, collection and training {recipe}")
    budget.add_argument("--max-gens", type=_positive_int, metavar="N", help=f"CMA-ES generations per env {recipe}")
    budget.add_argument("--eval-every", type=_positive_int, metavar="K",
                        help=f"eval snapshot every K generations {recipe}")
    budget.add_argument("--patience", type=_positive_int, metavar="P", help=f"early-stopping patience in generations; "
                        f"0 disables {recipe}")
    budget.add_argument("--time-budget", type=_minutes, metavar="MINUTES",
                        help="wall-clock bound per env (default: none)")
    hardware = p.add_argument_group("hardware")
    hardware.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where V, M and C run (default auto)")
    hardware.add_argument("--workers", type=_positive_int, metavar="N",
                          help="env worker processes (default: one per core)")
    hardware.add_argument("--backend", choices=["local", "ray"],
                          help="where env workers run: local processes or Ray actors (default local)")
    hardware.add_argument("--ray-address", metavar="HOST:PORT",
                          help="Ray cluster to join with --backend ray (default $RAY_ADDRESS; none starts a local Ray)")
    output = p.add_argument_group("output")
    output.add_argument("--out", default="checkpoints", metavar="DIR", help="run folder (default checkpoints)")
    output.add_argument("--restart", action="store_true", help="start over in --out, deleting the earlier run")
    output.add_argument("--break-lock", action="store_true",
                        help="take over a run folder whose lock names another host (its trainer is gone)")
    output.add_argument("--trust-run", action="store_true",
                        help="resume from a run folder whose state files another user or machine signed "
                             "(reading them can run code they hold: only for folders you trust)")
    output.add_argument("--json", action="store_true", help="print curriculum_results.json as one line at the end")
    output.add_argument("--print-config", action="store_true",
                        help="print the resolved config (recipe, --config files, --set and flags) as YAML "
                             "and exit, writing nothing")
    output.add_argument("--tensorboard", action="store_true", default=None,
                        help="also write TensorBoard scalars to DIR/tensorboard (needs the tensorboard extra)")
    output.add_argument("--track", action="store_true", default=None,
                        help="also log the scalars to Weights & Biases (needs the wandb extra; project "
                             "$WANDB_PROJECT, default worldmodels; WANDB_MODE=offline records without an account)")
    viewing = p.add_argument_group("viewing")
    viewing.add_argument("--live", action="store_true", default=None,
                         help="watch the current best agent in a window while it trains")
    return p


def choose_recipe(args: argparse.Namespace) -> tuple[dict | None, str, dict | None]:
    """The configs a run starts from, the banner's line on why, and the config to resume from:
    --config as given; else the recipe and config recorded in --out's run.yaml (a resume keeps
    its recipe on any machine, and every setting the command does not give, --envs and the
    budget included); else the machine's: gpu where --device resolves to a CUDA device, laptop
    otherwise."""
    from .config import MACHINE_KEYS, RECIPES
    from .runfolder import RunFolder

    if args.config:
        return {"name": ",".join(args.config), "configs": list(args.config)}, \
            f"recipe: --config {' '.join(args.config)}", None
    if not args.restart:
        folder = RunFolder(Path(args.out))
        try:
            recorded = folder.read_recipe()
            config = folder.read_config() if folder.run_yaml.exists() else None
        except (UserError, OSError, KeyError, TypeError):  # an unreadable run.yaml: the trainer says what to do
            recorded, config = None, None
        if config is not None:
            config = {k: v for k, v in config.items() if k not in MACHINE_KEYS} if isinstance(config, dict) else None
        if recorded is not None:
            return recorded, f"recipe: {recorded['name']} (recorded in {folder.run_yaml})", config
        if config is not None:  # a run from before recipes were recorded
            return None, f"recipe: the settings recorded in {folder.run_yaml}", config
    from .agent import resolve_device

    device = resolve_device(args.device or "auto")
    if device.type == "cuda":
        import torch

        name, why = "gpu", f"found {torch.cuda.get_device_name(device)}"
    else:
        name, why = "laptop", "no GPU found" if (args.device or "auto") == "auto" else f"--device {args.device}"
    other = "laptop" if name == "gpu" else "gpu"
    return {"name": name, "configs": list(RECIPES[name])}, f"recipe: {name} ({why}); --config {other} to choose", None


def train_main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = train_parser().parse_args(argv)

    def go():
        from .config import build_config
        from .curriculum import Run

        flags = {k: v for k, v in {
            "envs": args.envs.split(",") if args.envs else None, "max_gens": args.max_gens,
            "eval_every": args.eval_every, "patience": args.patience, "seed": args.seed, "device": args.device,
            "workers": args.workers, "backend": args.backend, "ray_address": args.ray_address,
            "time_budget": args.time_budget, "max_env_steps": args.max_env_steps,
            "stages": args.stages.split(",") if args.stages else None, "live": args.live,
            "tensorboard": args.tensorboard, "track": args.track,
        }.items() if v is not None}
        recipe, why, recorded = choose_recipe(args)
        cfg = build_config(recipe["configs"] if recorded is None and recipe else [], args.set, flags, base=recorded)
        if args.print_config:
            import yaml

            from .config import to_dict

            print(f"# {why}\n" + yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
            return 0
        if args.from_dir and not Path(args.from_dir).is_dir():
            raise UserError(f"--from {args.from_dir}: no such run folder")
        if args.trust_run:
            print(f"wm-train: warning: --trust-run reads the resume states in {args.out} whoever wrote "
                  "them; a crafted state file runs its code with your rights. From now on they are "
                  "signed with your key.", file=sys.stderr)
        run = Run(cfg, Path(args.out), ["wm-train", *argv], restart=args.restart,
                  from_dir=Path(args.from_dir) if args.from_dir else None, trust=args.trust_run,
                  break_lock=args.break_lock, recipe=recipe, recipe_why=why)
        results = run.run()
        from .console import closing
        from .report import format_table

        if results:
            table = format_table(results)
            print(table, flush=True)  # stdout's contract: the table, then --json's line
            if not _same_terminal():
                print(table, file=sys.stderr)
            if not run.interrupt.flag:
                for line in closing(run, results, interrupted=False):
                    print(line, file=sys.stderr)
        if args.json:
            print(json.dumps(results))
        return 0

    return _run_guarded(go)


# -- wm-report -------------------------------------------------------------------------------
REPORT_EXAMPLES = """examples:
  wm-report checkpoints/              tables, plots and report.md under checkpoints/report/
  wm-report runs/smoke --json         the same, and curriculum_results.json as the last line
  wm-report runs/s0 runs/s1 runs/s2 --out paper/   runs of one recipe (seeds): mean ± std, IQM with
                                      a bootstrap interval, curves with a band over the runs
  wm-report checkpoints/ --x gens     curves against generations (steps: env steps; wall: wall-clock)"""


def report_main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="wm-report", description="Turn run folders into tables and plots: one run into DIR/report/, "
                      "several runs of one recipe (their run.yaml differ only in the seed) into --out.",
                      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=REPORT_EXAMPLES)
    what = p.add_argument_group("what to report")
    what.add_argument("dirs", nargs="+", metavar="DIR",
                      help="run folders written by wm-train (finished or in progress)")
    output = p.add_argument_group("output")
    output.add_argument("--out", metavar="OUT", help="the report folder (default: DIR/report for one run; "
                        "needed for several)")
    output.add_argument("--json", action="store_true", help="print the results as one JSON line at the end "
                        "(one run: its curriculum_results.json; several: the table's rows)")
    plots = p.add_argument_group("plots")
    plots.add_argument("--x", choices=("steps", "gens", "wall"), default="steps",
                       help="the curves' x axis: env steps, generations or the controller's wall-clock "
                       "(default: steps)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)

    def go():
        from .report import load_run, load_runs, runs_table, write_report, write_runs_report
        from .runfolder import RunFolder

        several = len(args.dirs) > 1
        if several and not args.out:
            raise UserError(f"{len(args.dirs)} run folders need --out, the folder for their report")
        if several:
            table = write_runs_report(args.dirs, args.out, x=args.x)
        else:
            table = write_report(args.dirs[0], out=args.out, x=args.x)
        print(table)
        out = Path(args.out) if args.out else RunFolder(Path(args.dirs[0])).report_dir
        print(f"report written to {out}", file=sys.stderr)
        if args.json and several:
            print(json.dumps({"runs": args.dirs, "envs": runs_table(load_runs(args.dirs))[0].rows()}))
        elif args.json:
            run = load_run(args.dirs[0])
            print(json.dumps({"version": run["version"], "updated": run["updated"], "envs": run["envs"]}))
        return 0

    return _run_guarded(go)


# -- wm-play ---------------------------------------------------------------------------------
PLAY_EXAMPLES = """examples:
  wm-play --ckpt checkpoints/carracing/best.pt                   a window where a display is reachable
  wm-play --ckpt checkpoints --env pong --headless --record pong.mp4
  wm-play --ckpt checkpoints/carracing --episodes 100 --json     reproduce the final score
  wm-play --ckpt checkpoints/pong/best.pt --dream                 the agent inside M"""


def play_main(argv: list[str] | None = None) -> int:
    from .seeds import FINAL_SEED_START

    p = OneLineParser(prog="wm-play", description="Watch, record or score a trained agent on the official env.",
                      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=PLAY_EXAMPLES)
    what = p.add_argument_group("what to play")
    what.add_argument("--ckpt", required=True, metavar="PATH",
                      help="an agent bundle (best.pt), an env folder or a run folder")
    what.add_argument("--env", help="pong, breakout, carracing or a Gymnasium id (default: the one best.pt "
                      "was trained on; picks the env when --ckpt is a run folder)")
    what.add_argument("--episodes", type=_positive_int, default=1, metavar="N", help="episodes to play (default 1)")
    what.add_argument("--seed", type=_positive_int, default=FINAL_SEED_START, metavar="S",
                      help=f"episode i uses seed S+i (default {FINAL_SEED_START}, the final evaluation's)")
    what.add_argument("--max-steps", type=_positive_int, default=0, metavar="N",
                      help="cap on an episode (default 0 = the env's own end)")
    what.add_argument("--dream", action="store_true",
                      help="play inside the world model M (from the first real frame) instead of the env")
    what.add_argument("--temperature", type=float, default=1.15, metavar="TAU",
                      help="M's sampling temperature in --dream (default 1.15)")
    output = p.add_argument_group("output")
    output.add_argument("--record", metavar="FILE", help="write a video: .mp4 (H.264), .avi or .gif (default: none)")
    output.add_argument("--json", action="store_true", help='print {"env", "episodes", "mean", "std", "scores"}')
    viewing = p.add_argument_group("viewing")
    viewing.add_argument("--headless", action="store_true", help="never open a window (default: a window "
                         "where a display is reachable)")
    viewing.add_argument("--fps", type=float, default=60.0,
                         help="env steps a second shown or recorded (default 60; an agent that holds each "
                              "action for k steps shows one frame in k)")
    hardware = p.add_argument_group("hardware")
    hardware.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                          help="where V, M and C run (default auto)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)

    def go():
        from .play import play

        if args.episodes < 1:
            raise UserError("--episodes must be >= 1")
        if not (math.isfinite(args.fps) and args.fps > 0):
            raise UserError(f"--fps must be a number > 0 (got {args.fps})")
        if args.temperature <= 0:
            raise UserError("--temperature must be > 0")
        result = play(env=args.env, ckpt=args.ckpt, episodes=args.episodes, seed=args.seed,
                      headless=args.headless, record=args.record, fps=args.fps, max_steps=args.max_steps,
                      device=args.device, dream=args.dream, temperature=args.temperature)
        if args.json:
            print(json.dumps(result))
        elif result["mean"] is None:
            print(f"{result['env']}: stopped before an episode ended; no score")
        else:
            where = f" in the dream (tau {args.temperature:g})" if args.dream else ""
            print(f"{result['env']}{where}: {result['mean']:.2f} ± {result['std']:.2f} "
                  f"over {result['episodes']} episodes")
        return 0

    return _run_guarded(go)


if __name__ == "__main__":  # python -m worldmodels.cli wm-train|wm-report|wm-play ARGS
    tools = {"wm-train": train_main, "wm-report": report_main, "wm-play": play_main}
    if len(sys.argv) < 2 or sys.argv[1] not in tools:
        print("usage: python -m worldmodels.cli wm-train|wm-report|wm-play [ARGS]", file=sys.stderr)
        raise SystemExit(2)
    tool = sys.argv.pop(1)
    sys.argv[0] = tool
    raise SystemExit(tools[tool]())
