"""`rlab`: launch, list, follow and cancel runs, and move experiments in and out as YAML, from a
terminal, through the REST API.

    rlab launch experiment.yaml --project 3 --follow
    rlab launch experiment.yaml --project 3 --seeds 1,2,3
    rlab runs --project 3 --status running
    rlab logs -f 12        (a tracked run: its metrics, as they arrive)
    rlab cancel 12
    rlab sweep sweep.yaml --project 3
    rlab templates --team 1
    rlab launch-template 4 --project 3 --param lr=1e-5 --param procs=2
    rlab export 5 -o grpo.yaml && rlab import grpo.yaml --project 4

Exit status: 0 done, 1 refused or failed (a run followed to its end that did not succeed), 2 a
usage error. The server and token come from --url and --token, or RLAB_URL and RLAB_TOKEN.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from rlab.client import (
    Backoff,
    Client,
    Rejected,
        Transient,
)

OK, FAILED, USAGE = 0, 1, 2
EXPERIMENT_KEYS = ("name", "description", "kind", "config")
KINDS = ("training", "evaluation")
TRACKED = "tracked"  # the kind of a run a script logs to (rlab.init, mlflow)
LOG_PAGE = 1000
POLL_SECONDS = 1.0


class Failed(Exception):
    """The command cannot do what was asked; the message says why and what to do."""


class Usage(Exception):
    """The command line asks for something that does not make sense; exit status 2."""


class Api(Client):
    """The SDK's client, plus the reads the commands need; failures are Transient or Rejected,
    as for the SDK's writes."""

    def post_json(self, path: str, body: Any = None) -> Any:
        return self.post(path, json.dumps(body or {}).encode())

    def page_url(self, path: str) -> str:
        return f"{self.url}{path}"


def describe(error: Rejected) -> str:
    """A refusal as a person reads it: each bad field named, without the request's plumbing.

    >>> describe(Rejected(422, [{"loc": ["body", "config", "lr"], "msg": "must be > 0"}]))
    'config.lr: must be > 0'
    >>> describe(Rejected(404, "Not Found"))
    'Not Found (HTTP 404)'
    """
    if isinstance(error.detail, list):
        lines = []
        for item in error.detail:
            where = ".".join(str(part) for part in item.get("loc", [])
                             if part not in ("body", "payload", "query"))
            lines.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
        return "\n".join(lines)
    return f"{error.detail} (HTTP {error.status})"


# Experiment files --------------------------------------------------------------------------------

def read_experiment(path: Path, name: str | None) -> dict[str, Any]:
    """An experiment file: a mapping of `name`, `description`, `kind` and `config` (what
    `rlab export` writes), or a bare mapping of run settings, which needs `name` from the command
    line. `name` overrides the file's."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise Failed(f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise Failed(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise Failed(f"{path} must hold a mapping: an experiment ({', '.join(EXPERIMENT_KEYS)})"
                     " or run settings")
    if "config" in data or "name" in data:
        unknown = sorted(set(data) - set(EXPERIMENT_KEYS))
        if unknown:
            raise Failed(f"{path}: unknown key(s) {', '.join(unknown)}; an experiment file holds "
                         f"{', '.join(EXPERIMENT_KEYS)} (run settings go under config)")
        experiment = {"name": data.get("name"), "description": data.get("description") or "",
                      "kind": data.get("kind") or "training", "config": data.get("config") or {}}
    else:
        experiment = {"name": None, "description": "", "kind": "training", "config": data}
    if name:
        experiment["name"] = name
    if not experiment["name"]:
        raise Usage(f"{path} holds run settings only: name the experiment with --name")
    if experiment["kind"] not in KINDS:
        raise Failed(f"{path}: kind must be {' or '.join(KINDS)}, not {experiment['kind']!r}")
    if not isinstance(experiment["config"], dict):
        raise Failed(f"{path}: config must be a mapping of settings")
    return experiment


def resolved_config(kind: str, config: dict[str, Any]) -> dict[str, Any] | None:
    """The config as the server stores it (every setting, defaults filled in), to tell whether
    an experiment of the same name defines the same thing; None if this version cannot read it."""
    from training.spec.config import ConfigError, RunConfig
    from training.spec.evaluation_config import EvalConfig

    try:
        if kind == "evaluation":
            resolved = EvalConfig.from_dict(config).to_dict()
            del resolved["model"]  # each evaluation job names its own
        else:
            resolved = RunConfig.from_dict(config).to_dict()
    except ConfigError:
        return None
    return json.loads(json.dumps(resolved))


def ensure_experiment(api: Api, project: int, experiment: dict[str, Any]) -> dict[str, Any]:
    """Create the experiment in the project, or reuse the one of that name when it has the same
    kind and config (its description aside). One of that name defined differently is refused:
    a run must run what the file says."""
    try:
        created = api.post_json(f"/projects/{project}/experiments", experiment)
    except Rejected as exc:
        if exc.status != 409:
            raise
    else:
        note(f"Created experiment {created['name']!r} (#{created['id']}).")
        return created
    existing = next((e for e in api.get(f"/projects/{project}/experiments")
                     if e["name"] == experiment["name"]), None)
    if existing is None:  # renamed or deleted since the server refused the name
        raise Failed(f"project {project} says the name {experiment['name']!r} is taken but "
                     "lists no such experiment: try again")
    wanted = resolved_config(experiment["kind"], experiment["config"])
    if existing["kind"] == experiment["kind"] and existing["config"] == wanted:
        note(f"Using experiment {existing['name']!r} (#{existing['id']}): same config.")
        return existing
    raise Failed(f"project {project} already has an experiment named {existing['name']!r} "
                 f"(#{existing['id']}) that {differences(existing, experiment['kind'], wanted)}; "
                 "pass --name to create this one under another name "
                 f"(`rlab export {existing['id']}` shows the existing one)")


def differences(existing: dict[str, Any], kind: str, wanted: dict[str, Any] | None) -> str:
    if existing["kind"] != kind:
        return f"is {'an' if existing['kind'] == 'evaluation' else 'a'} {existing['kind']} one"
    if wanted is None:
        return "differs"
    changed = sorted(key for key in set(existing["config"]) | set(wanted)
                     if existing["config"].get(key) != wanted.get(key))
    shown = ", ".join(f"{key}: {wanted.get(key)!r} here, {existing['config'].get(key)!r} there"
                      for key in changed[:5])
    return f"differs in {shown}{' …' if len(changed) > 5 else ''}"


def seed_list(text: str) -> list[int]:
    """--seeds: "1,2,3" or ranges "0-4" (both ends in).

    >>> seed_list("1,2, 3"), seed_list("0-2,7")
    ([1, 2, 3], [0, 1, 2, 7])
    """
    seeds: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            if high and int(high) - int(low) >= 10_000:
                raise argparse.ArgumentTypeError(f"the range {part.strip()} is too long")
            seeds += range(int(low), int(high or low) + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of seeds: write 1,2,3 or 0-4") from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"{text!r} names no seed: write 1,2,3 or 0-4")
    return seeds


def write_experiment(experiment: dict[str, Any]) -> str:
    return yaml.safe_dump({key: experiment[key] for key in EXPERIMENT_KEYS},
                          sort_keys=False, allow_unicode=True)


# Commands ----------------------------------------------------------------------------------------

def launch(api: Api, args: argparse.Namespace) -> int:
    experiment = read_experiment(args.file, args.name)
    if experiment["kind"] == "evaluation" and not (args.model or args.checkpoint is not None):
        raise Usage("an evaluation runs on a model: give --model or --checkpoint")
    if experiment["kind"] == "training" and (args.model or args.checkpoint is not None):
        raise Usage("--model and --checkpoint are for evaluations; a training experiment's "
                    "config names its model")
    if args.seeds is not None and (experiment["kind"] == "evaluation" or args.follow):
        raise Usage("--seeds launches several training runs: it takes neither an evaluation "
                    "nor --follow (follow one with `rlab logs -f RUN`)")
    experiment = ensure_experiment(api, args.project, experiment)
    if args.seeds is not None:
        launched = api.post_json(f"/experiments/{experiment['id']}/runs", {"seeds": args.seeds})
        for run in launched:
            print(f"Launched {run['name']} (run {run['id']}, seed {run['config']['seed']}): "
                  f"{api.page_url(run['url'])}", flush=True)
        return OK
    target = ({"model": args.model} if args.model else
              {"checkpoint_id": args.checkpoint} if args.checkpoint is not None else {})
    run = api.post_json(f"/experiments/{experiment['id']}/runs", target)
    print(f"Launched {run['name']} (run {run['id']}): {api.page_url(run['url'])}", flush=True)
    return follow(api, run["id"]) if args.follow else OK


def import_(api: Api, args: argparse.Namespace) -> int:
    experiment = ensure_experiment(api, args.project, read_experiment(args.file, args.name))
    print(f"Experiment {experiment['id']}: {api.page_url(experiment['url'])}")
    return OK


def export(api: Api, args: argparse.Namespace) -> int:
    experiment = api.get(f"/experiments/{args.experiment}")
    if experiment["kind"] not in KINDS:
        raise Failed(f"{experiment['name']!r} is a {experiment['kind']} experiment: its runs "
                     "record what their scripts log, and it has no config to export")
    text = write_experiment(experiment)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        note(f"Wrote {experiment['name']!r} to {args.output}.")
    else:
        sys.stdout.write(text)
    return OK


def runs(api: Api, args: argparse.Namespace) -> int:
    page = api.get("/runs", project=args.project, status=args.status, limit=args.limit,
                   filter=args.filter, order_by=args.order_by)
    rows = [("ID", "RUN", "STATUS", "PROGRESS", "CREATED")]
    for run in page["items"]:
        progress = run["progress"]
        rows.append((str(run["id"]), title(run), run["status"],
                     f"{progress['step']}/{progress['total']}" if progress["total"] else "-",
                     local_time(run["created_at"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    if page["count"] > len(page["items"]):
        note(f"{len(page['items'])} of {page['count']} runs; --limit shows more.")
    return OK


def logs(api: Api, args: argparse.Namespace) -> int:
    run = api.get(f"/runs/{args.run}")
    tracked = run["kind"] == TRACKED
    if args.follow:
        return follow_metrics(api, run) if tracked else follow(api, args.run)
    after = 0
    while True:
        page = api.get(f"/runs/{args.run}/logs", after=after, limit=LOG_PAGE)
        after = print_lines(page["items"], after)
        if len(page["items"]) < LOG_PAGE:
            if tracked and not after:
                note(f"{title(run)} (run {run['id']}) is a tracked run: it has no worker log. "
                     f"`rlab logs -f {run['id']}` follows its metrics.")
            return OK


def cancel(api: Api, args: argparse.Namespace) -> int:
    try:
        run = api.post_json(f"/runs/{args.run}/cancel")
    except Rejected as exc:
        if exc.status == 409:
            raise Failed(str(exc.detail)) from exc
        raise
    print(f"Cancelled {title(run)} (run {run['id']}).")
    return OK


def sweep(api: Api, args: argparse.Namespace) -> int:
    try:
        definition = yaml.safe_load(args.file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise Usage(f"cannot read {args.file}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise Usage(f"{args.file} is not YAML: {exc}") from exc
    if not isinstance(definition, dict):
        raise Usage(f"{args.file} holds no sweep: expected experiment, name, method, "
                    "objective, budget, max_concurrent and axes")
    if args.name:
        definition["name"] = args.name
    created = api.post_json(f"/projects/{args.project}/sweeps", definition)
    print(f"Sweep {created['name']!r} (sweep {created['id']}): {len(created['run_ids'])} runs "
          f"launched of {created['progress']['planned']}: {api.page_url(created['url'])}")
    return OK


def param_pair(text: str) -> tuple[str, str]:
    """A `--param NAME=VALUE`; the value is sent as text, which the server reads as the
    parameter's type.

    >>> param_pair("lr=1e-5")
    ('lr', '1e-5')
    >>> param_pair("tag=a=b")
    ('tag', 'a=b')
    """
    name, equals, value = text.partition("=")
    if not equals or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: write NAME=VALUE, e.g. lr=1e-5")
    return name.strip(), value


def param_summary(param: dict[str, Any]) -> str:
    """A parameter as `rlab templates` lists it.

    >>> param_summary({"name": "lr", "type": "float", "default": 1e-05, "min": 0, "max": 0.1,
    ...                "choices": [], "required": False})
    'lr:float=1e-05 [0..0.1]'
    """
    text = f"{param['name']}:{param['type']}"
    if param["default"] not in (None, ""):
        text += f"={param['default']}"
    if param["type"] in ("int", "float") and (param["min"], param["max"]) != (None, None):
        low, high = ("" if bound is None else bound for bound in (param["min"], param["max"]))
        text += f" [{low}..{high}]"
    if param["choices"]:
        text += " {" + "|".join(param["choices"]) + "}"
    return text + (" (required)" if param["required"] else "")


def templates(api: Api, args: argparse.Namespace) -> int:
    listed = api.get("/job-templates", **({"team_id": args.team} if args.team else {}))
    for template in listed:
        params = ", ".join(param_summary(param) for param in template["parameters"])
        print(f"{template['id']}\t{template['name']}\tqueue {template['queue']}\t"
              f"{params or 'no parameters'}")
    if not listed:
        note("No job templates: a team admin creates them on the team's Job templates page.")
    return OK


def launch_template(api: Api, args: argparse.Namespace) -> int:
    values: dict[str, str] = {}
    for name, value in args.param or []:
        if name in values:
            raise Usage(f"--param {name} given twice")
        values[name] = value
    body: dict[str, Any] = {"project_id": args.project, "values": values,
                            "priority": args.priority}
    if args.experiment:
        body["experiment_name"] = args.experiment
    run = api.post_json(f"/job-templates/{args.template}/launch", body)
    print(f"Launched {run['name']} (run {run['id']}): {api.page_url(run['url'])}", flush=True)
    return follow(api, run["id"]) if args.follow else OK


def get_waiting(api: Api, run_id: int, path: str, **params: Any) -> dict[str, Any]:
    """GET `path` for a run being followed; while the server is away, wait for it (saying so
    once), as `tail -f` waits for a file."""
    backoff, waiting = Backoff(base=1.0, cap=30.0), False
    while True:
        try:
            return api.get(path, **params)
        except Transient as exc:
            if not waiting:
                note(f"{exc}; still following run {run_id}, Ctrl-C stops.")
            waiting = True
            time.sleep(backoff.next_delay())


def follow(api: Api, run_id: int) -> int:
    """Print the run's log lines as they arrive, until it ends; OK if it succeeded. A page read
    after the run ended that is not full holds the last lines."""
    after = 0
    while True:
        page = get_waiting(api, run_id, f"/runs/{run_id}/logs", after=after, limit=LOG_PAGE)
        after = print_lines(page["items"], after)
        if len(page["items"]) == LOG_PAGE:
            continue
        if not page["active"]:
            break
        time.sleep(POLL_SECONDS)
    return ended(api, run_id)


def follow_metrics(api: Api, run: dict[str, Any]) -> int:
    """A tracked run has no worker log: print its metric points as they arrive, a line per step
    (every point so far first), until it ends; OK if it succeeded."""
    run_id = run["id"]
    note(f"{title(run)} (run {run_id}) is a tracked run: it has no worker log. Following its "
         "metrics instead; Ctrl-C stops.")
    last: dict[str, int] = {}  # each key's last step printed
    keys: list[str] = []
    while True:
        # From the earliest step a key may still have new points at (a key not yet read: 0).
        start = min((last.get(key, -1) for key in keys), default=-1) + 1
        page = get_waiting(api, run_id, f"/runs/{run_id}/metrics", start=start)
        keys = page["keys"]
        print_points(page["series"], last)
        if not page["active"]:
            return ended(api, run_id)
        time.sleep(POLL_SECONDS)


def print_points(series: dict[str, list[list[Any]]], last: dict[str, int]) -> None:
    """Print the points of `series` ({key: [steps, values, times]}) after each key's last step
    printed, one line per step with its keys in order; `last` is brought up to date."""
    steps: dict[int, dict[str, Any]] = {}
    for key, (key_steps, values, _) in series.items():
        for step, value in zip(key_steps, values):
            if step > last.get(key, -1):
                steps.setdefault(step, {})[key] = value
                last[key] = step
    for step in sorted(steps):
        shown = "  ".join(f"{key} {'nan' if value is None else format(value, '.6g')}"
                          for key, value in sorted(steps[step].items()))
        print(f"step {step}  {shown}", flush=True)


def ended(api: Api, run_id: int) -> int:
    """Say how the run ended; OK if it succeeded."""
    run = api.get(f"/runs/{run_id}")
    outcome = f"{title(run)} (run {run_id}) {run['status']}"
    note(f"{outcome}: {run['error']}" if run["error"] else f"{outcome}.")
    return OK if run["status"] == "succeeded" else FAILED


def title(run: dict[str, Any]) -> str:
    """A run as people name it: a tracked run by the name its script gave it, with its
    experiment and number; any other by its experiment and number.

    >>> title({"name": "trl #2", "run_name": "lr 1e-6"})
    'lr 1e-6 (trl #2)'
    >>> title({"name": "grpo-small #1", "run_name": ""})
    'grpo-small #1'
    """
    return f"{run['run_name']} ({run['name']})" if run.get("run_name") else run["name"]


def print_lines(lines: list[dict[str, Any]], after: int) -> int:
    """Print each line; the id to read after next time."""
    for line in lines:
        print(f"{local_time(line['time'], seconds=True)} {line['level'].upper():<7} "
              f"{line['source']:<7} {line['message']}", flush=True)
        after = line["id"]
    return after


def local_time(iso: str, seconds: bool = False) -> str:
    moment = datetime.fromisoformat(iso).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def note(message: str) -> None:
    """What happened along the way, on stderr, so that stdout holds only the command's result."""
    print(message, file=sys.stderr, flush=True)


# The command line --------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument("--url", help="the rlab server (default: $RLAB_URL)")
    connection.add_argument("--token", help="an API token (default: $RLAB_TOKEN)")
    main_parser = argparse.ArgumentParser(prog="rlab", description=__doc__,
                                          formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = main_parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[connection], help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    sub = command("launch", launch, "Create (or reuse) an experiment from a YAML file and "
                                    "launch a run of it.")
    sub.add_argument("file", type=Path, help="an experiment (name, description, kind, config) "
                                             "or bare run settings")
    sub.add_argument("--project", type=int, required=True, help="the project's id")
    sub.add_argument("--name", help="the experiment's name, instead of the file's")
    sub.add_argument("--model", help="an evaluation: the model to evaluate")
    sub.add_argument("--checkpoint", type=int, help="an evaluation: the checkpoint's id")
    sub.add_argument("-f", "--follow", action="store_true",
                     help="print the run's log until it ends; exit 1 unless it succeeded")
    sub.add_argument("--seeds", type=seed_list, metavar="1,2,3",
                     help="launch one run per seed, all or none: a list, ranges too (0-4)")

    sub = command("runs", runs, "List runs, newest first.")
    sub.add_argument("--project", type=int, help="only this project's")
    sub.add_argument("--status", help="only runs in this status (queued, starting, running, "
                                      "succeeded, failed, cancelled, interrupted, "
                                      "crashed)")
    sub.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    sub.add_argument("--filter", help="MLflow's search filter, e.g. \"params.lr > 1e-6 and "
                                      "tags.method = 'spo'\"")
    sub.add_argument("--order-by", action="append", metavar="KEY",
                     help="MLflow's order_by, e.g. \"metrics.loss ASC\" (repeatable)")

    sub = command("logs", logs, "Print a run's log lines (a tracked run has none: -f follows "
                                "its metrics).")
    sub.add_argument("run", type=int, help="the run's id")
    sub.add_argument("-f", "--follow", action="store_true",
                     help="keep printing until the run ends (a tracked run's metric points); "
                          "exit 1 unless it succeeded")

    sub = command("cancel", cancel, "Cancel a run.")
    sub.add_argument("run", type=int, help="the run's id")

    sub = command("sweep", sweep, "Create a sweep from a YAML file and launch its runs.")
    sub.add_argument("file", type=Path, help="the sweep: experiment, name, method, objective, "
                                             "pruner, budget, max_concurrent, seeds, axes")
    sub.add_argument("--project", type=int, required=True, help="the project's id")
    sub.add_argument("--name", help="the sweep's name, instead of the file's")

    sub = command("templates", templates, "List the job templates of your teams, with their "
                                          "parameters.")
    sub.add_argument("--team", type=int, help="only this team's (its id)")

    sub = command("launch-template", launch_template,
                  "Launch a job template as a run, with parameter values.")
    sub.add_argument("template", type=int, help="the template's id (see `rlab templates`)")
    sub.add_argument("--project", type=int, required=True, help="the project's id")
    sub.add_argument("--param", type=param_pair, action="append", metavar="NAME=VALUE",
                     help="a parameter's value (repeatable); the others take their defaults")
    sub.add_argument("--experiment", help="the experiment to group the run in (default: the "
                                          "template's name)")
    sub.add_argument("--priority", type=int, default=0, help="-100 to 100 (default 0)")
    sub.add_argument("-f", "--follow", action="store_true",
                     help="print the run's log until it ends; exit 1 unless it succeeded")

    sub = command("export", export, "Write an experiment as YAML, for launch or import.")
    sub.add_argument("experiment", type=int, help="the experiment's id")
    sub.add_argument("-o", "--output", type=Path, help="the file to write (default: stdout)")

    sub = command("import", import_, "Create an experiment from a YAML file, without launching.")
    sub.add_argument("file", type=Path)
    sub.add_argument("--project", type=int, required=True, help="the project's id")
    sub.add_argument("--name", help="the experiment's name, instead of the file's")
    return main_parser


def connect(args: argparse.Namespace) -> Api:
    url, token = args.url or os.environ.get("RLAB_URL"), args.token or os.environ.get("RLAB_TOKEN")
    if not url:
        raise Usage("no server: pass --url or set RLAB_URL (e.g. http://127.0.0.1:8000)")
    if not token:
        raise Usage("no API token: pass --token or set RLAB_TOKEN to a token made under "
                    "API tokens (top right of the web app)")
    return Api(url, token)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse has already explained
        return exc.code if isinstance(exc.code, int) else USAGE
    try:
        return args.handler(connect(args), args)
    except Usage as exc:
        print(f"rlab {args.command}: {exc}", file=sys.stderr)
        return USAGE
    except Rejected as exc:
        reason = describe(exc)
        print(f"rlab {args.command}: refused:\n{reason}" if "\n" in reason
              else f"rlab {args.command}: {reason}", file=sys.stderr)
        return FAILED
    except (Failed, Transient) as exc:
        print(f"rlab {args.command}: {exc}", file=sys.stderr)
        return FAILED
    except KeyboardInterrupt:
        return 130
