from django.apps import AppConfig


class QueueConfig(AppConfig):
    name = "webapp.queue"
    label = "queue"

    def ready(self) -> None:
        from webapp.projects.models import Project
        from webapp.projects.services import project_limit_changed
        from webapp.queue.services import project_queue_wake

        def wake(sender, project: Project, **_: object) -> None:
            project_queue_wake(project=project)

        project_limit_changed.connect(wake, sender=Project, weak=False,
                                      dispatch_uid="queue.project_limit_changed")
