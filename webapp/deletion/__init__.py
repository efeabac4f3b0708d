"""Deleting a run, an experiment, a dataset or a project, with what they hold on disk: the plan
(plans: what goes, and why it cannot go now), the services, and the confirmation page that every
deletion shows (views).

It sits above the apps whose rows and files it removes, so that none of them imports it.
Models stay in their apps (webapp.runs.models and the others): moving one would cost a data
migration."""
