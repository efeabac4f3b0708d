"""Projects now belong to teams. Projects made before teams get a team per creator, with that
creator as admin, so nobody loses access to what they made."""

import django.db.models.deletion
from django.db import migrations, models


def assign_teams(apps, schema_editor):
    Project = apps.get_model("projects", "Project")
    Team = apps.get_model("teams", "Team")
    Membership = apps.get_model("teams", "Membership")
    for project in Project.objects.filter(team__isnull=True).select_related("created_by"):
        name = f"{project.created_by.username}'s team"
        team, created = Team.objects.get_or_create(name=name)
        if created:
            Membership.objects.create(team=team, user=project.created_by, role="admin")
        project.team = team
        project.save(update_fields=["team"])


class Migration(migrations.Migration):
    dependencies = [
        ("projects", "0001_initial"),
        ("teams", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="project", name="team",
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT,
                                    related_name="projects", to="teams.team"),
        ),
        migrations.RunPython(assign_teams, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="project", name="team",
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT,
                                    related_name="projects", to="teams.team"),
        ),
        migrations.AlterField(
            model_name="project", name="name", field=models.CharField(max_length=120),
        ),
        migrations.AddConstraint(
            model_name="project",
            constraint=models.UniqueConstraint(fields=("team", "name"),
                                               name="project_name_unique_in_team"),
        ),
    ]
