from django.urls import path, register_converter

from webapp.rollouts import views

register_converter(views.PromptIdConverter, "prompt_id")

app_name = "rollouts"
urlpatterns = [
    path("runs/<int:run_id>/rollouts/", views.rollout_browser, name="browser"),
    path("runs/<int:run_id>/prompts/<prompt_id:prompt_id>/", views.prompt_history_view,
         name="prompt_history"),
]
