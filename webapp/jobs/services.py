"""Writes for job templates: an admin's create, update and delete, and a member's launch of a
template as a script run (and its resume from a checkpoint).

A launch renders the template once into the run's config (ScriptSpec under "script"), inside the
transaction that creates the run, so the worker that claims it after the commit finds the command
complete, and a later edit of the template never changes a run already launched.
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from webapp.experiments.models import Experiment, ExperimentKind
from webapp.jobs.models import JobTemplate, RolloutFormat
from webapp.jobs.parameters import (
    CHECKPOINT,
    Parameter,
    SpecError,
    TemplateDefinition,
    devices_render,
    parameters_parse,
    template_check,
    text_problem,
    tokens_render,
    values_clean,
)
from webapp.jobs.script_spec import ScriptSpec, script_spec_of
from webapp.projects.activity import Verb
from webapp.projects.models import Project
from webapp.queue.services import PRIORITY_MAX, PRIORITY_MIN
from webapp.runs.files import run_folder
from webapp.runs.models import Run
from webapp.runs.seed_groups import seed_group_of
from webapp.runs.services import run_create
from webapp.teams.models import Role, Team
from webapp.teams.selectors import require_role

# The fields of a template that its form and the API set.
TEMPLATE_FIELDS = ("name", "description", "command", "parameters", "working_dir", "environment",
                   "queue", "devices", "rollouts_format", "rollouts_path", "checkpoints_path",
                   "resume_arguments")
_QUEUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,19}")


def _template_fields_check(*, team: Team, fields: dict[str, Any],
                           template: JobTemplate | None = None) -> dict[str, Any]:
    """The fields, checked and tidied, for a template of `team` (SpecError keyed by field)."""
    unknown = sorted(set(fields) - set(TEMPLATE_FIELDS))
    if unknown:
        raise SpecError({unknown[0]: "A job template has no such field."})
    data = {"description": "", "parameters": [], "working_dir": "", "environment": {},
            "queue": "cpu", "devices": "1", "rollouts_format": "", "rollouts_path": "",
            "checkpoints_path": "", "resume_arguments": "", **fields}
    errors: dict[str, str] = {}
    for text_field in ("name", "description", "command", "working_dir", "queue", "devices",
                       "rollouts_format", "rollouts_path", "checkpoints_path",
                       "resume_arguments"):
        if not isinstance(data.get(text_field, ""), str):
            errors[text_field] = "Give text."
            data[text_field] = ""
    name = data.get("name", "").strip()
    data["name"] = name
    problem = text_problem(name, max_length=120, allow_dash=True)
    if not name:
        errors["name"] = "Give the template a name."
    elif problem:
        errors["name"] = f"The name {problem}."
    elif JobTemplate.objects.filter(team=team, name=name).exclude(
            pk=getattr(template, "pk", None)).exists():
        errors["name"] = f"The team has a template named {name} already."
    description = data["description"]
    if len(description) > 5000 or "\x00" in description or \
            text_problem(description.replace("\n", " ").replace("\r", " ").replace("\t", " "),
                         max_length=5000, allow_dash=True):
        errors["description"] = "The description is text of at most 5,000 characters."
    if not _QUEUE.fullmatch(data["queue"]):
        errors["queue"] = ("A queue's name: letters, digits, '.', '_' or '-', at most 20 "
                           "(cpu, gpu, or one your workers listen on).")
    if data["rollouts_format"] not in RolloutFormat.values:
        errors["rollouts_format"] = "Rollouts are TRL's, veRL's or none."
    try:
        template_check(command=data["command"], parameters=data["parameters"],
                       environment=data["environment"], devices=data["devices"],
                       working_dir=data["working_dir"], rollouts_format=data["rollouts_format"],
                       rollouts_path=data["rollouts_path"],
                       checkpoints_path=data["checkpoints_path"],
                       resume_arguments=data["resume_arguments"])
    except SpecError as exc:
        errors = {**exc.errors, **errors}
    if errors:
        raise SpecError(errors)
    data["parameters"] = [parameter.to_dict()
                          for parameter in parameters_parse(data["parameters"])]
    data["devices"] = data["devices"].strip()
    return data


def job_template_create(*, team: Team, user, fields: dict[str, Any]) -> JobTemplate:
    """A new template of `team`; PermissionDenied unless `user` is one of its admins, SpecError
    keyed by field for anything that does not check."""
    require_role(user, team.pk, Role.ADMIN)
    data = _template_fields_check(team=team, fields=fields)
    try:
        with transaction.atomic():
            return JobTemplate.objects.create(team=team, created_by=user, **data)
    except IntegrityError:
        raise SpecError({"name": f"The team has a template named {data['name']} already."}
                        ) from None


def job_template_update(*, template: JobTemplate, user, fields: dict[str, Any]) -> JobTemplate:
    """Change a template (admins only); runs launched from it keep what they were launched
    with."""
    require_role(user, template.team_id, Role.ADMIN)
    data = _template_fields_check(team=template.team, fields=fields, template=template)
    for name, value in data.items():
        setattr(template, name, value)
    try:
        with transaction.atomic():
            template.save()
    except IntegrityError:
        raise SpecError({"name": f"The team has a template named {data['name']} already."}
                        ) from None
    return template


def job_template_delete(*, template: JobTemplate, user) -> None:
    """Delete a template (admins only); its runs stay, with their command, and lose the link."""
    require_role(user, template.team_id, Role.ADMIN)
    template.delete()


def template_definition(template: JobTemplate) -> TemplateDefinition:
    """The template's launchable parts, checked again: a template saved under older rules that
    no longer pass cannot launch (ValidationError saying what to fix)."""
    try:
        return template_check(
            command=template.command, parameters=template.parameters,
            environment=template.environment, devices=template.devices,
            working_dir=template.working_dir, rollouts_format=template.rollouts_format,
            rollouts_path=template.rollouts_path, checkpoints_path=template.checkpoints_path,
            resume_arguments=template.resume_arguments)
    except SpecError as exc:
        raise ValidationError(f"The template {template.name} cannot launch until an admin fixes "
                              f"it: {exc}") from None


def _builtins(run: Run) -> dict[str, str]:
    return {"output_dir": str(run_folder(run.pk, run.created_at)), "run_id": str(run.pk)}


def _script_experiment(*, project: Project, name: str, user) -> Experiment:
    """The project's script experiment named `name`, created when it is not there."""
    problem = text_problem(name, max_length=120, allow_dash=True)
    if problem:
        raise SpecError({"experiment_name": f"The experiment's name {problem}."})
    experiment, _ = Experiment.objects.get_or_create(
        project=project, name=name,
        defaults={"kind": ExperimentKind.SCRIPT, "config": {}, "author": user,
                  "description": "Runs launched from a job template."})
    if experiment.kind != ExperimentKind.SCRIPT:
        raise SpecError({"experiment_name": f"{name} is a {experiment.get_kind_display().lower()}"
                                            " experiment of this project; name another for the "
                                            "template's runs."})
    return experiment


def _spec(*, definition: TemplateDefinition, values: dict[str, Any], builtins: dict[str, str],
          template: JobTemplate | None, template_name: str, paths: dict[str, str],
          extra: list[str] = ()) -> ScriptSpec:
    argv = tokens_render(definition.argv, values, builtins) + list(extra)
    environment = dict(zip(definition.environment,
                           tokens_render(definition.environment.values(), values, builtins)))
    return ScriptSpec(
        argv=argv, environment=environment, template_id=getattr(template, "pk", None),
        template_name=template_name, parameters=values, **paths,
        template_snapshot={
            "command": definition.argv, "environment": definition.environment,
            "devices": definition.devices,
            "parameters": [parameter.to_dict() for parameter in definition.parameters],
            "resume_arguments": definition.resume_arguments})


def script_run_launch(*, template: JobTemplate, project: Project, user, values: dict[str, Any],
                      experiment_name: str = "", priority: int = 0) -> Run:
    """Queue a script run of `template` in `project` with parameter `values` (texts from a form
    or typed values from the API; missing ones take their defaults), in the project's script
    experiment named after the template, or `experiment_name`.

    PermissionDenied unless `user` is a member of the project's team; ValidationError for a
    project of another team or a template that cannot launch; SpecError keyed by parameter name
    (or experiment_name, priority) for values that do not fit."""
    require_role(user, project.team_id, Role.MEMBER)
    if project.team_id != template.team_id:
        raise ValidationError(f"The template {template.name} belongs to another team than the "
                              f"project {project.name}.")
    if isinstance(priority, bool) or not isinstance(priority, int) \
            or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise SpecError({"priority": f"A priority from {PRIORITY_MIN} to {PRIORITY_MAX}."})
    definition = template_definition(template)
    clean = values_clean(definition.parameters, values)
    devices = devices_render(definition.devices, clean)
    name = (experiment_name or "").strip() or template.name
    paths = {"working_dir": template.working_dir, "rollouts_format": template.rollouts_format,
             "rollouts_path": template.rollouts_path,
             "checkpoints_path": template.checkpoints_path}
    with transaction.atomic():
        experiment = _script_experiment(project=project, name=name, user=user)
        run = run_create(experiment=experiment, config={"script": {}}, user=user,
                         verb=Verb.LAUNCHED, detail=f"from the template {template.name}",
                         queue=template.queue, devices=devices, job_template=template,
                         priority=priority)
        spec = _spec(definition=definition, values=clean, builtins=_builtins(run),
                     template=template, template_name=template.name, paths=paths)
        _config_save(run, spec)
    return run


def _config_save(run: Run, spec: ScriptSpec) -> None:
    run.config = {"script": spec.to_dict()}
    run.seed_group = seed_group_of({"template": spec.template_id, **spec.parameters})
    run.save(update_fields=["config", "seed_group"])


def script_run_resume(*, run: Run, user) -> Run:
    """A new run of the same script experiment that continues `run` from its newest checkpoint:
    the command it was launched with, rendered again for the new run's folder, with the
    template's resume arguments (`{checkpoint}`: that checkpoint's folder) after it.
    ValidationError when the template gave no resume arguments, or no checkpoint is left."""
    require_role(user, run.experiment.project.team_id, Role.MEMBER)
    spec = script_spec_of(run.config)
    if spec is None:
        raise ValidationError(f"Run #{run.number} is not a script run.")
    snapshot = spec.template_snapshot
    if not snapshot.get("resume_arguments"):
        raise ValidationError(f"The template {spec.template_name} says no way to resume its "
                              "runs: an admin can add resume arguments to it "
                              "(`--resume_from_checkpoint {checkpoint}`). Launch it again.")
    checkpoint = run.checkpoint_to_resume()
    if checkpoint is None:
        raise ValidationError(f"Run #{run.number} has no checkpoint folder to resume from: its "
                              "trainer saved none where the template says (checkpoints_path), "
                              "or the folders are gone. Launch the template again.")
    parameters = [Parameter(**{**data, "choices": tuple(data.get("choices", ()))})
                  for data in snapshot["parameters"]]
    definition = TemplateDefinition(argv=snapshot["command"], parameters=parameters,
                                    environment=snapshot.get("environment", {}),
                                    devices=snapshot.get("devices", "1"),
                                    resume_arguments=snapshot["resume_arguments"])
    paths = {"working_dir": spec.working_dir, "rollouts_format": spec.rollouts_format,
             "rollouts_path": spec.rollouts_path, "checkpoints_path": spec.checkpoints_path}
    with transaction.atomic():
        resumed = run_create(
            experiment=run.experiment, config={"script": {}}, user=user, verb=Verb.RESUMED,
            detail=f"from #{run.number} at step {checkpoint.step}", resumed_from=checkpoint,
            queue=run.queue, devices=run.devices, job_template=run.job_template,
            priority=run.priority)
        builtins = _builtins(resumed)
        extra = tokens_render(definition.resume_arguments, spec.parameters,
                              {**builtins, CHECKPOINT: checkpoint.path})
        _config_save(resumed, _spec(definition=definition, values=spec.parameters,
                                    builtins=builtins, template=run.job_template,
                                    template_name=spec.template_name, paths=paths, extra=extra))
    return resumed
