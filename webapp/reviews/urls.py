from django.urls import path

from webapp.reviews import views

app_name = "reviews"
urlpatterns = [
    path("runs/<int:run_id>/comments/", views.comment_create, name="comment_create"),
    path("comments/<int:comment_id>/delete/", views.comment_delete, name="comment_delete"),
    path("runs/<int:run_id>/star/", views.run_star, name="star"),
    path("runs/<int:run_id>/tags/", views.run_tag_add, name="tag_add"),
    path("runs/<int:run_id>/tags/<int:tag_id>/remove/", views.run_tag_remove,
         name="tag_remove"),
    path("runs/<int:run_id>/notes/", views.run_notes, name="notes"),
    path("rollouts/<int:rollout_id>/", views.rollout_detail, name="rollout"),
    path("rollouts/<int:rollout_id>/annotations/", views.annotation_create,
         name="annotation_create"),
    path("annotations/<int:annotation_id>/delete/", views.annotation_delete,
         name="annotation_delete"),
    path("projects/<int:project_id>/review/", views.project_review, name="project_review"),
    path("projects/<int:project_id>/activity/", views.project_activity, name="activity"),
    path("teams/<int:team_id>/labels/", views.label_create, name="label_create"),
]
