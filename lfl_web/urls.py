"""URLs: the home page (the experiments list), sign in/out, the admin, the experiments' pages and the API."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from lfl_web.experiments import views

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("", include("lfl_web.experiments.urls")),
    path("api/", include("lfl_web.api.urls")),
]
