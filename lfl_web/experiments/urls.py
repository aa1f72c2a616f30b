"""Page URLs of the experiments app (included at the site root by lfl_web.urls)."""

from django.urls import path

from lfl_web.experiments import views

urlpatterns = [
    path("experiments/", views.experiment_list, name="experiment_list"),
    path("experiments/new/", views.experiment_new, name="experiment_new"),
    path("experiments/new/estimate/", views.experiment_estimate, name="experiment_estimate"),
    path("experiments/<int:pk>/", views.experiment_detail, name="experiment_detail"),
    path("experiments/<int:pk>/results/", views.experiment_results, name="experiment_results"),
    path("experiments/<int:pk>/workers/", views.experiment_workers, name="experiment_workers"),
    path("experiments/<int:pk>/progress/", views.experiment_progress, name="experiment_progress"),
    path("experiments/<int:pk>/cancel/", views.experiment_cancel, name="experiment_cancel"),
    path("experiments/<int:pk>/delete/", views.experiment_delete, name="experiment_delete"),
    path("leaderboard/", views.leaderboard, name="leaderboard"),
    path("losses/<int:pk>/download/<str:fmt>/", views.download_loss, name="download_loss"),
    path("losses/<int:pk>/transfers/", views.loss_transfers, name="loss_transfers"),
]
