from django.urls import path

from webapp.teams import views

app_name = "teams"
urlpatterns = [
    path("teams/", views.team_list, name="list"),
    path("teams/<int:team_id>/", views.team_detail, name="detail"),
    path("teams/<int:team_id>/invite/", views.team_invite, name="invite"),
    path("teams/<int:team_id>/invitations/<int:invitation_id>/revoke/",
         views.invitation_revoke, name="invitation_revoke"),
    path("teams/<int:team_id>/members/<int:membership_id>/role/", views.member_role,
         name="member_role"),
    path("teams/<int:team_id>/members/<int:membership_id>/remove/", views.member_remove,
         name="member_remove"),
    path("invite/<str:token>/", views.invitation, name="invitation"),
]
