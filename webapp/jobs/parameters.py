"""A job template's parameters and how its command is rendered with their values.

A template's command is split into arguments once, when it is saved (`shlex.split`, as a POSIX
shell would split it, but no shell ever runs it). Each argument may hold `{name}` placeholders;
rendering fills each argument on its own, so a value never adds or splits an argument, and a
value is refused where it could change what the program does beyond its own argument: NUL,
control characters, lone surrogates, an over-long text, or a leading `-` (which would make it an
option) unless its parameter allows one. The program, the first argument, holds no placeholder:
a value never chooses what runs.

Nothing here touches the database: webapp.jobs.services gives the built-in values
(`{output_dir}`, `{run_id}`) and records what was rendered.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

# Placeholders every template may use, filled from the run rather than by whoever launches it.
BUILTINS = ("output_dir", "run_id")
# Only resume arguments may use this one: the folder of the checkpoint being resumed from.
CHECKPOINT = "checkpoint"
TYPES = ("int", "float", "str", "bool", "choice")
MAX_PARAMETERS = 100
MAX_DEVICES = 64
# The longest text value a parameter may allow, and the default when it names none.
MAX_TEXT_LENGTH = 4096
DEFAULT_TEXT_LENGTH = 256
# Integers beyond this are refused: nothing a trainer takes needs more, and a huge number is
# what an attacker sends to find a parser's limits.
MAX_INT = 10**15
# Environment variables rlab sets for the process itself, which a template may not replace.
RESERVED_ENV = re.compile(r"RLAB_.*|MLFLOW_TRACKING_.*|MLFLOW_RUN_ID")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
# C0 and C1 controls, Unicode's line and paragraph separators, and the bidirectional overrides
# and isolates, which would make a command on the run's page read otherwise than it runs.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


class SpecError(ValueError):
    """Problems found, keyed by where they are (a template field, or a parameter's name for a
    launch's values), each a sentence that says what to change."""

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{where}: {message}" for where, message in self.errors.items()))


@dataclass(frozen=True)
class Parameter:
    """One typed parameter; `default` is None when there is none (then a launch must give a value
    if `required`, and otherwise the parameter renders as an empty argument)."""

    name: str
    type: str = "str"
    default: Any = None
    min: float | int | None = None  # int and float
    max: float | int | None = None
    max_length: int = DEFAULT_TEXT_LENGTH  # str
    regex: str = ""  # str: the whole value must match it
    choices: tuple[str, ...] = ()  # choice
    help: str = ""
    required: bool = False
    allow_dash: bool = False  # str and choice: may a value start with "-"?

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["choices"] = list(self.choices)
        return data


def text_problem(value: str, *, max_length: int = MAX_TEXT_LENGTH,
                 allow_dash: bool = False) -> str | None:
    """Why `value` cannot be an argument or an environment value, or None.

    >>> text_problem("1e-5") is None
    True
    >>> text_problem("--help")
    'may not start with "-" (it would become an option)'
    >>> text_problem("a\\x00b")
    'holds a NUL byte'
    """
    if "\x00" in value:
        return "holds a NUL byte"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "holds a lone surrogate, which is not text"
    if _CONTROL.search(value):
        return ("holds a control character (a newline, tab, escape, or a Unicode line separator "
                "or bidirectional override)")
    if len(value) > max_length:
        return f"is {len(value)} characters long; at most {max_length}"
    if value.startswith("-") and not allow_dash:
        return 'may not start with "-" (it would become an option)'
    return None


def placeholders(text: str) -> list[str]:
    """The `{name}` placeholders in `text`; `{{` and `}}` are literal braces. SpecError for a lone
    brace or a placeholder that is not a name.

    >>> placeholders("--lr={lr} {{literal}} {output_dir}")
    ['lr', 'output_dir']
    """
    found = []
    for match in _PLACEHOLDER.finditer(text):
        if match.group(0) in ("{{", "}}"):
            continue
        name = match.group(1)
        if name is None:
            raise SpecError({"command": f"A lone brace in {text!r}: write {{{{ or }}}} for a "
                                        "literal brace."})
        if not IDENTIFIER.fullmatch(name):
            raise SpecError({"command": f"{{{name}}} in {text!r} is not a placeholder: a "
                                        "placeholder is a parameter's name, such as {lr}."})
        found.append(name)
    return found


def fill(text: str, values: Mapping[str, str]) -> str:
    """`text` with each placeholder replaced by its value and `{{`/`}}` by braces; the values are
    not looked into again, so a value holding `{name}` stays as it is.

    >>> fill("--lr={lr} {{x}}", {"lr": "{run_id}"})
    '--lr={run_id} {x}'
    """
    def one(match: re.Match) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        return values[match.group(1)]
    return _PLACEHOLDER.sub(one, text)


def command_split(command: str, *, where: str = "command") -> list[str]:
    """The command's arguments, split as a POSIX shell would (SpecError on unbalanced quotes or
    text that is no argument at all). Lines may end in a backslash, as in a shell script; a
    browser's textarea sends CRLF line ends."""
    command = command.replace("\r\n", "\n").replace("\\\n", "")
    problem = text_problem(command.replace("\n", " ").replace("\t", " "),
                           max_length=10_000, allow_dash=True)
    if problem:
        raise SpecError({where: f"The text {problem}."})
    try:
        tokens = shlex.split(command, comments=False, posix=True)
    except ValueError as exc:
        raise SpecError({where: f"It cannot be split into arguments: {exc} (check the "
                                "quotes)."}) from None
    return tokens


def _number(value: Any, kind: str, what: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{what} must be a number")
    try:
        number = int(value) if kind == "int" else float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{what} must be {'a whole number' if kind == 'int' else 'a number'}, "
                         f"not {str(value)[:40]!r}") from None
    if kind == "int":
        if isinstance(value, float) and value != number:
            raise ValueError(f"{what} must be a whole number, not {value!r}")
        if abs(number) > MAX_INT:
            raise ValueError(f"{what} is too large (at most {MAX_INT:.0e} either way)")
    elif not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number")
    return number


def parameter_parse(data: Any) -> Parameter:
    """One parameter from its JSON form (ValueError with the reason)."""
    if not isinstance(data, dict):
        raise ValueError("each parameter is an object: {name, type, default, ...}")
    known = set(Parameter.__dataclass_fields__)
    unknown = sorted(str(key)[:40] for key in data if key not in known)
    if unknown:
        raise ValueError(f"unknown field {', '.join(unknown)}; the fields are "
                         f"{', '.join(sorted(known))}")
    name = data.get("name")
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
        raise ValueError(f"the name {str(name)[:40]!r} is not an identifier (letters, digits and "
                         "_, not starting with a digit, at most 64)")
    if name in BUILTINS or name == CHECKPOINT:
        raise ValueError(f"{name} is a built-in placeholder; choose another name")
    kind = data.get("type", "str")
    if kind not in TYPES:
        raise ValueError(f"the type of {name} must be one of {', '.join(TYPES)}")
    fields: dict[str, Any] = {"name": name, "type": kind}
    for flag in ("required", "allow_dash"):
        if not isinstance(data.get(flag, False), bool):
            raise ValueError(f"{flag} of {name} must be true or false")
        fields[flag] = data.get(flag, False)
    help_text = data.get("help", "")
    if not isinstance(help_text, str) or text_problem(help_text, max_length=500, allow_dash=True):
        raise ValueError(f"the help of {name} must be text of at most 500 characters")
    fields["help"] = help_text
    if kind in ("int", "float"):
        for bound in ("min", "max"):
            if data.get(bound) is not None:
                fields[bound] = _number(data[bound], kind, f"{bound} of {name}")
        if fields.get("min") is not None and fields.get("max") is not None \
                and fields["min"] > fields["max"]:
            raise ValueError(f"min of {name} ({fields['min']}) is above its max ({fields['max']})")
    elif data.get("min") is not None or data.get("max") is not None:
        raise ValueError(f"{name} is a {kind}: only int and float parameters take min and max")
    if kind == "str":
        max_length = data.get("max_length", DEFAULT_TEXT_LENGTH)
        if isinstance(max_length, bool) or not isinstance(max_length, int) \
                or not 1 <= max_length <= MAX_TEXT_LENGTH:
            raise ValueError(f"max_length of {name} must be a whole number from 1 to "
                             f"{MAX_TEXT_LENGTH}")
        fields["max_length"] = max_length
        regex = data.get("regex", "")
        if not isinstance(regex, str) or len(regex) > 500 or "\x00" in regex:
            raise ValueError(f"the regex of {name} must be text of at most 500 characters")
        try:
            re.compile(regex)
        except re.error as exc:
            raise ValueError(f"the regex of {name} is not a regular expression: {exc}") from None
        fields["regex"] = regex
    elif data.get("regex"):
        raise ValueError(f"{name} is a {kind}: only str parameters take a regex")
    if kind == "choice":
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or len(choices) > 200 \
                or not all(isinstance(choice, str) for choice in choices):
            raise ValueError(f"{name} is a choice: give its choices, a list of texts")
        for choice in choices:
            problem = text_problem(choice, allow_dash=fields["allow_dash"])
            if problem:
                raise ValueError(f"the choice {choice[:40]!r} of {name} {problem}")
        if len(set(choices)) != len(choices):
            raise ValueError(f"the choices of {name} hold one twice")
        fields["choices"] = tuple(choices)
    elif data.get("choices"):
        raise ValueError(f"{name} is a {kind}: only choice parameters take choices")
    parameter = Parameter(**fields)
    default = data.get("default")
    if default is not None and not (kind == "str" and default == "" and not parameter.required):
        try:
            default = value_clean(parameter, default)
        except ValueError as exc:
            raise ValueError(f"the default of {name}: {exc}") from None
    return Parameter(**{**fields, "default": default})


def parameters_parse(data: Any) -> list[Parameter]:
    """A template's parameters from their JSON form, a list of objects; SpecError keyed
    "parameters" naming the first problem."""
    if not isinstance(data, list):
        raise SpecError({"parameters": "The parameters are a list of objects: "
                                       '[{"name": "lr", "type": "float", ...}].'})
    if len(data) > MAX_PARAMETERS:
        raise SpecError({"parameters": f"At most {MAX_PARAMETERS} parameters."})
    parsed = []
    for position, item in enumerate(data, start=1):
        try:
            parsed.append(parameter_parse(item))
        except ValueError as exc:
            raise SpecError({"parameters": f"Parameter {position}: {exc}."}) from None
    names = [parameter.name for parameter in parsed]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise SpecError({"parameters": f"Each name once: {', '.join(twice)} given twice."})
    return parsed


def value_clean(parameter: Parameter, value: Any) -> Any:
    """The value as its parameter's type, within its bounds (ValueError with the reason). Texts
    from a form are converted: "3" for an int, "on" or "false" for a bool."""
    kind = parameter.type
    if kind in ("int", "float"):
        number = _number(value, kind, "it")
        if parameter.min is not None and number < parameter.min:
            raise ValueError(f"{number} is below the minimum, {parameter.min}")
        if parameter.max is not None and number > parameter.max:
            raise ValueError(f"{number} is above the maximum, {parameter.max}")
        return number
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "on", "1", "yes"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "off", "0", "no", ""):
            return False
        raise ValueError("it must be true or false")
    if not isinstance(value, str):
        raise ValueError("it must be text")
    if kind == "choice":
        if value not in parameter.choices:
            raise ValueError(f"{value[:40]!r} is not one of {', '.join(parameter.choices)}")
        return value
    problem = text_problem(value, max_length=parameter.max_length,
                           allow_dash=parameter.allow_dash)
    if problem:
        raise ValueError(f"it {problem}")
    if parameter.regex and not re.fullmatch(parameter.regex, value):
        raise ValueError(f"it must match {parameter.regex}")
    return value


def values_clean(parameters: Iterable[Parameter], values: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter's value: the one given, else its default; SpecError keyed by parameter
    name for a value that does not fit, a required one missing, or a name the template has no
    parameter for."""
    parameters = list(parameters)
    errors: dict[str, str] = {}
    known = {parameter.name for parameter in parameters}
    for name in values:
        if name not in known:
            shown = str(name)[:40]
            errors[shown] = (f"The template has no parameter {shown!r}; its parameters are "
                             f"{', '.join(sorted(known)) or 'none'}.")
    clean: dict[str, Any] = {}
    for parameter in parameters:
        given = values.get(parameter.name)
        if given is None or (given == "" and parameter.type != "bool"):  # a form's empty box
            if parameter.required and parameter.default is None:
                errors[parameter.name] = "A value is required."
                continue
            given = parameter.default
        if given is None:
            clean[parameter.name] = False if parameter.type == "bool" else ""
            continue
        try:
            clean[parameter.name] = value_clean(parameter, given)
        except ValueError as exc:
            errors[parameter.name] = f"{str(exc)[:1].upper()}{str(exc)[1:]}."
    if errors:
        raise SpecError(errors)
    return clean


def value_text(value: Any) -> str:
    """A clean value as the argument text a program reads: bools as true/false (what argparse's
    HF helpers, Hydra and OmegaConf accept), floats as Python writes them (1e-05).

    >>> [value_text(v) for v in (True, 3, 1e-05, "x")]
    ['true', '3', '1e-05', 'x']
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class TemplateDefinition:
    """A template's launchable parts, checked: what JobTemplate holds, parsed."""

    argv: list[str]
    parameters: list[Parameter]
    environment: dict[str, str] = field(default_factory=dict)
    devices: str = "1"
    resume_arguments: list[str] = field(default_factory=list)


def _relative_path_problem(path: str, *, allow_dot: bool) -> str | None:
    if "\x00" in path or text_problem(path, max_length=500, allow_dash=True):
        return "must be a plain path of at most 500 characters"
    if path.startswith("/"):
        return "must be relative to the run's folder, not absolute"
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in path.split("/"):
        return 'may not hold ".." (it must stay inside the run\'s folder)'
    if not parts and not allow_dot:
        return "must name a folder inside the run's folder"
    return None


def template_check(*, command: str, parameters: Any, environment: Any, devices: str,
                   working_dir: str = "", rollouts_format: str = "", rollouts_path: str = "",
                   checkpoints_path: str = "", resume_arguments: str = "") -> TemplateDefinition:
    """A template's fields checked together, as saving one needs them; SpecError with every
    problem found, keyed by field."""
    errors: dict[str, str] = {}
    parsed: list[Parameter] = []
    try:
        parsed = parameters_parse(parameters)
    except SpecError as exc:
        errors.update(exc.errors)
    by_name = {parameter.name: parameter for parameter in parsed}
    known = set(by_name) | set(BUILTINS)

    def check_tokens(tokens: list[str], where: str, allowed: set[str]) -> None:
        for token in tokens:
            try:
                names = placeholders(token)
            except SpecError as exc:
                errors.setdefault(where, exc.errors["command"])
                return
            unknown = [name for name in names if name not in allowed]
            if unknown:
                errors.setdefault(where, f"{{{unknown[0]}}} is not a parameter; the placeholders "
                                         f"are {', '.join('{%s}' % n for n in sorted(allowed))}.")
                return

    argv: list[str] = []
    try:
        argv = command_split(command)
    except SpecError as exc:
        errors.update(exc.errors)
    else:
        if not argv:
            errors["command"] = "Give the command to run."
        elif _PLACEHOLDER.search(argv[0]):
            errors["command"] = ("The program (the first word) is fixed: it may not hold a "
                                 "placeholder or a brace.")
        else:
            check_tokens(argv, "command", known)

    resume: list[str] = []
    if resume_arguments.strip():
        try:
            resume = command_split(resume_arguments, where="resume_arguments")
        except SpecError as exc:
            errors.update(exc.errors)
        else:
            check_tokens(resume, "resume_arguments", known | {CHECKPOINT})
            if not any(CHECKPOINT in _safe_placeholders(token) for token in resume):
                errors.setdefault("resume_arguments", "Name the checkpoint to resume from with "
                                                      "{checkpoint}.")

    env: dict[str, str] = {}
    if not isinstance(environment, dict):
        errors["environment"] = "The environment is an object, name to value."
    else:
        if len(environment) > 100:
            errors["environment"] = "At most 100 environment variables."
        for name, value in environment.items():
            if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
                errors["environment"] = (f"{str(name)[:40]!r} is not a variable name (letters, "
                                         "digits and _, not starting with a digit).")
                break
            if RESERVED_ENV.fullmatch(name):
                errors["environment"] = (f"{name} is set by rlab for each run (RLAB_*, "
                                         "MLFLOW_TRACKING_*, MLFLOW_RUN_ID); it cannot be "
                                         "replaced.")
                break
            if not isinstance(value, str):
                errors["environment"] = f"The value of {name} must be text."
                break
            problem = text_problem(value, allow_dash=True)
            if problem:
                errors["environment"] = f"The value of {name} {problem}."
                break
            env[name] = value
        else:
            check_tokens(list(env.values()), "environment", known)

    devices = (devices or "").strip()
    if devices.isdigit():
        if not 1 <= int(devices) <= MAX_DEVICES:
            errors["devices"] = f"Devices: a number from 1 to {MAX_DEVICES}."
    elif re.fullmatch(r"\{[A-Za-z_][A-Za-z0-9_]*\}", devices):
        parameter = by_name.get(devices[1:-1])
        if parameter is None or parameter.type != "int":
            errors["devices"] = f"{devices} must be an int parameter's placeholder."
        elif parameter.min is None or parameter.max is None or parameter.min < 1 \
                or parameter.max > MAX_DEVICES:
            errors["devices"] = (f"{devices} sets the devices: give it a min of at least 1 and a "
                                 f"max of at most {MAX_DEVICES}.")
    else:
        errors["devices"] = (f"Devices: a number from 1 to {MAX_DEVICES}, or one int "
                             "parameter's {name}.")

    if working_dir and (not working_dir.startswith("/") or
                        text_problem(working_dir, max_length=1000, allow_dash=True)
                        or ".." in working_dir.split("/")):
        errors["working_dir"] = ("The working folder is an absolute path on the worker "
                                 "(without ..), or empty for the run's own folder.")
    if rollouts_format and not rollouts_path:
        errors["rollouts_path"] = "Say where the trainer writes its rollout files."
    if rollouts_path:
        problem = _relative_path_problem(rollouts_path, allow_dot=True)
        if problem:
            errors["rollouts_path"] = f"The rollouts path {problem}."
        elif not rollouts_format:
            errors["rollouts_format"] = "Say which trainer's rollout files these are."
    if checkpoints_path:
        problem = _relative_path_problem(checkpoints_path, allow_dot=True)
        if problem:
            errors["checkpoints_path"] = f"The checkpoints path {problem}."
    if errors:
        raise SpecError(errors)
    return TemplateDefinition(argv=argv, parameters=parsed, environment=env, devices=devices,
                              resume_arguments=resume)


def _safe_placeholders(token: str) -> list[str]:
    try:
        return placeholders(token)
    except SpecError:
        return []


def tokens_render(tokens: Iterable[str], values: Mapping[str, Any],
                  builtins: Mapping[str, str]) -> list[str]:
    """Each token with its placeholders filled: one argument in, one argument out. `values` are
    clean (values_clean); `builtins` are rlab's own (output_dir, run_id, checkpoint)."""
    texts = {name: value_text(value) for name, value in values.items()}
    texts.update(builtins)
    return [fill(token, texts) for token in tokens]


def devices_render(devices: str, values: Mapping[str, Any]) -> int:
    """How many devices a launch with `values` needs (SpecError keyed by the parameter when its
    value is out of range; template_check already bounds it)."""
    if devices.isdigit():
        return int(devices)
    name = devices.strip("{}")
    count = values[name]
    if not 1 <= count <= MAX_DEVICES:
        raise SpecError({name: f"It sets the devices: from 1 to {MAX_DEVICES}."})
    return count
