"""The script run's part of a run's page: its template, its command as launched and its
parameter values. webapp.runs sits beneath this app, so its page reaches this by tag."""

from django import template

from webapp.jobs.selectors import command_line, run_script

register = template.Library()


@register.inclusion_tag("jobs/_run_script.html")
def run_script_panel(run) -> dict:
    spec = run_script(run)
    return {"run": run, "spec": spec, "command": command_line(spec) if spec else ""}
