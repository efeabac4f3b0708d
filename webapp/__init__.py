"""rlab's web app: the Django project (config) and one app per thing a reader looks for, each
importing only the apps beneath it (an import-linter contract in pyproject.toml):

    site                           the whole site's commands (serve, demo)
    api, mlflow_compat             the JSON API and the MLflow-compatible tracking endpoints
    deletion                       deleting runs, experiments, datasets and projects
    reviews                        labels, annotations, comments, tags, the activity feed
    live | rollouts | evaluations  a run's live page; its rollouts; evaluation results
    runs                           a run's life, its page, and the models of what it records
    experiments                    experiment and evaluation definitions
    datasets                       uploaded prompt and preference datasets
    projects                       projects, their activity signal, disk use and backups
    teams                          teams, members and roles
    common                         small pieces beneath every app
"""
