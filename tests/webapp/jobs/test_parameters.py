"""Parameter specs and rendering: a value fills one argument and can never add one."""

import pytest

from webapp.jobs.parameters import (
    SpecError,
    parameters_parse,
    template_check,
    tokens_render,
    values_clean,
)

PARAMS = [
    {"name": "lr", "type": "float", "default": 1e-5, "min": 0, "max": 1},
    {"name": "procs", "type": "int", "default": 1, "min": 1, "max": 8},
    {"name": "tag", "type": "str", "default": "base"},
    {"name": "vllm", "type": "bool", "default": False},
    {"name": "loss", "type": "choice", "choices": ["grpo", "dr_grpo"], "default": "grpo"},
]
COMMAND = "accelerate launch --num_processes {procs} train.py --lr={lr} --tag {tag} " \
          "--use_vllm {vllm} --loss {loss} --out {output_dir} --json '{{\"a\": 1}}'"


def render(values, command=COMMAND):
    definition = template_check(command=command, parameters=PARAMS, environment={},
                                devices="{procs}")
    clean = values_clean(definition.parameters, values)
    return tokens_render(definition.argv, clean, {"output_dir": "/runs/run-1", "run_id": "1"})


def test_each_placeholder_fills_its_own_argument():
    assert render({"lr": "0.001", "procs": "2", "vllm": "on"}) == [
        "accelerate", "launch", "--num_processes", "2", "train.py", "--lr=0.001", "--tag", "base",
        "--use_vllm", "true", "--loss", "grpo", "--out", "/runs/run-1", "--json", '{"a": 1}']


@pytest.mark.parametrize("value", ["x; rm -rf /", "$(cat /etc/passwd)", "`id`", "a b  c",
                                   "x' --evil 'y", "a|b&&c>d"])
def test_shell_text_stays_one_literal_argument(value):
    argv = render({"tag": value})
    assert argv[argv.index("--tag") + 1] == value
    assert len(argv) == len(render({}))


def test_a_value_holding_a_placeholder_is_not_filled_again():
    argv = render({"tag": "{output_dir}"})
    assert argv[argv.index("--tag") + 1] == "{output_dir}"


@pytest.mark.parametrize("value, message", [
    ("--help", 'may not start with "-"'),
    ("a\x00b", "NUL"),
    ("a\ud800b", "surrogate"),
    ("a\nb", "control character"),
    ("safe\u202egnp.exe", "control character"),
    ("a\u2028b", "control character"),
    ("x" * 300, "at most 256"),
])
def test_bad_text_is_refused_with_the_reason(value, message):
    with pytest.raises(SpecError) as caught:
        render({"tag": value})
    assert message in caught.value.errors["tag"]


def test_a_parameter_may_allow_a_leading_dash():
    params = [{"name": "extra", "type": "str", "allow_dash": True}]
    definition = template_check(command="run {extra}", parameters=params, environment={},
                                devices="1")
    assert values_clean(definition.parameters, {"extra": "-v"}) == {"extra": "-v"}


@pytest.mark.parametrize("values, where, message", [
    ({"lr": "2"}, "lr", "above the maximum"),
    ({"procs": "0"}, "procs", "below the minimum"),
    ({"procs": "1.5"}, "procs", "whole number"),
    ({"procs": "9" * 40}, "procs", "too large"),
    ({"lr": "nan"}, "lr", "finite"),
    ({"loss": "ppo"}, "loss", "not one of"),
    ({"vllm": "maybe"}, "vllm", "true or false"),
    ({"nope": "1"}, "nope", "no parameter"),
])
def test_values_out_of_bounds_are_errors_on_their_parameter(values, where, message):
    with pytest.raises(SpecError) as caught:
        render(values)
    assert message in caught.value.errors[where]


def test_a_regex_bounds_a_text():
    params = [{"name": "model", "type": "str", "regex": r"[A-Za-z0-9_./-]+", "default": "m"}]
    definition = template_check(command="run {model}", parameters=params, environment={},
                                devices="1")
    with pytest.raises(SpecError, match="must match"):
        values_clean(definition.parameters, {"model": "${oc.env:SECRET}"})


def test_a_required_parameter_needs_a_value():
    params = parameters_parse([{"name": "data", "type": "str", "required": True}])
    with pytest.raises(SpecError) as caught:
        values_clean(params, {})
    assert caught.value.errors == {"data": "A value is required."}


@pytest.mark.parametrize("params, message", [
    ([{"name": "1lr", "type": "float"}], "not an identifier"),
    ([{"name": "lr", "type": "float", "min": 2, "max": 1}], "above its max"),
    ([{"name": "lr", "type": "float", "default": 5, "max": 1}], "default of lr"),
    ([{"name": "lr"}, {"name": "lr"}], "lr given twice"),
    ([{"name": "lr", "type": "complex"}], "must be one of"),
    ([{"name": "output_dir"}], "built-in"),
    ([{"name": "c", "type": "choice", "choices": []}], "give its choices"),
    ([{"name": "s", "regex": "("}], "not a regular expression"),
    ({"lr": 1}, "a list of objects"),
])
def test_bad_parameter_specs_are_refused_with_the_reason(params, message):
    with pytest.raises(SpecError) as caught:
        parameters_parse(params)
    assert message in caught.value.errors["parameters"]


@pytest.mark.parametrize("fields, where, message", [
    ({"command": "train --lr {rate}"}, "command", "{rate} is not a parameter"),
    ({"command": "train --x '{unclosed"}, "command", "cannot be split"),
    ({"command": "train {"}, "command", "lone brace"),
    ({"command": "{lr} train"}, "command", "program"),
    ({"command": "   "}, "command", "Give the command"),
    ({"environment": {"RLAB_TOKEN": "x"}}, "environment", "set by rlab"),
    ({"environment": {"MLFLOW_TRACKING_URI": "x"}}, "environment", "set by rlab"),
    ({"environment": {"A-B": "x"}}, "environment", "not a variable name"),
    ({"environment": {"A": "{nope}"}}, "environment", "not a parameter"),
    ({"devices": "65"}, "devices", "from 1 to 64"),
    ({"devices": "{lr}"}, "devices", "int parameter"),
    ({"devices": "two"}, "devices", "from 1 to 64"),
    ({"working_dir": "relative/dir"}, "working_dir", "absolute"),
    ({"rollouts_format": "trl", "rollouts_path": "../up"}, "rollouts_path", '".."'),
    ({"checkpoints_path": "/abs"}, "checkpoints_path", "relative"),
    ({"checkpoints_path": "a\x00b"}, "checkpoints_path", "plain path"),
    ({"resume_arguments": "--resume"}, "resume_arguments", "{checkpoint}"),
])
def test_bad_templates_are_refused_by_field(fields, where, message):
    data = {"command": "train --lr {lr}", "parameters": [{"name": "lr", "type": "float"}],
            "environment": {}, "devices": "1", **fields}
    with pytest.raises(SpecError) as caught:
        template_check(**data)
    assert message in caught.value.errors[where]


def test_environment_values_are_rendered_and_hydra_overrides_stay_one_token():
    definition = template_check(
        command="python3 -m verl.trainer.main_ppo trainer.experiment_name={name}",
        parameters=[{"name": "name", "type": "str", "default": "x"}],
        environment={"TAG": "run-{run_id}"}, devices="1")
    clean = values_clean(definition.parameters, {"name": "a trainer.total_epochs=99"})
    argv = tokens_render(definition.argv, clean, {"output_dir": "/o", "run_id": "7"})
    assert argv[-1] == "trainer.experiment_name=a trainer.total_epochs=99"
    assert tokens_render(definition.environment.values(), clean,
                         {"output_dir": "/o", "run_id": "7"}) == ["run-7"]


def test_a_command_may_span_lines_as_a_textarea_sends_them():
    from webapp.jobs.parameters import command_split

    assert command_split("accelerate launch \\\r\n  train.py \\\n --lr {lr}") == [
        "accelerate", "launch", "train.py", "--lr", "{lr}"]


def test_the_trl_example_launches_with_a_model_folder():
    from webapp.jobs.examples import example_definitions

    data = next(d for d in example_definitions() if d["name"].startswith("TRL"))
    definition = template_check(command=data["command"], parameters=data["parameters"],
                                environment={}, devices=data["devices"])
    clean = values_clean(definition.parameters, {"model": "/models/smol", "procs": "2"})
    argv = tokens_render(definition.argv, clean, {"output_dir": "/o", "run_id": "1"})
    assert argv[:4] == ["accelerate", "launch", "--num_processes", "2"]
    assert argv[argv.index("--model_name_or_path") + 1] == "/models/smol"
    for bad in ("../../etc/passwd", "-rf", "/m --max_steps 1"):
        with pytest.raises(SpecError):
            values_clean(definition.parameters, {"model": bad})
