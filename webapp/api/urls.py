from django.urls import path

from webapp.api import views

# Not "api": that namespace is the REST API's own (webapp.api.api), mounted at /api/.
app_name = "api_tokens"
urlpatterns = [
    path("settings/tokens/", views.token_list, name="list"),
    path("settings/tokens/<int:token_id>/revoke/", views.token_revoke, name="revoke"),
]
