from webapp.projects.models import Project
from webapp.teams.models import Role, Team
from webapp.teams.selectors import require_role


def project_create(*, team: Team, name: str, description: str, user) -> Project:
    require_role(user, team.pk, Role.MEMBER)
    return Project.objects.create(team=team, name=name, description=description,
                                  created_by=user)
