"""The whole site's management commands, above every app: `serve` (the web server and a worker in
one command) and `demo` (a team, a project and runs to look at).

It has no models and no pages. The models stay in their apps (webapp.runs.models and the
others): moving a model would cost a data migration."""
