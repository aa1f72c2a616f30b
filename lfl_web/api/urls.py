"""/api/...: the JSON API (see views.py; token authentication, see auth.py)."""

from django.urls import path, re_path

from lfl_web.api import views

app_name = "api"

urlpatterns = [
    path("experiments/", views.experiments, name="experiments"),
    path("experiments/<int:pk>/", views.experiment, name="experiment"),
    path("experiments/<int:pk>/cancel/", views.cancel_experiment, name="experiment-cancel"),
    path("leaderboard/", views.leaderboard, name="leaderboard"),
    path("losses/<int:pk>/download/<str:fmt>/", views.download_loss, name="loss-download"),
    path("losses/<int:pk>/transfers/", views.loss_transfers, name="loss-transfers"),
    path("transfers/<int:pk>/", views.transfer, name="transfer"),
    re_path(r"^(?P<path>.*)$", views.not_found),
]
