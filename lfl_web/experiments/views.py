"""Pages. Until the dashboard arrives there is one: a home page that lists the visible experiments."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from lfl_web.experiments.models import Experiment


@login_required
def home(request):
    experiments = Experiment.objects.visible_to(request.user).select_related("owner")[:50]
    return render(request, "home.html", {"experiments": experiments})
