from webapp.projects.models import Project


def project_create(*, name: str, description: str, user) -> Project:
    return Project.objects.create(name=name, description=description, created_by=user)
