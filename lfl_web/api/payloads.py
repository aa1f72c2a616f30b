"""What the API sends: experiments, learned losses and transfers as JSON-ready dicts with absolute
URLs (outputs.py defines their shapes and checks them on the way out)."""

from __future__ import annotations

from django.urls import reverse

from search_engine.facade import EXPORT_FORMATS, load_config, relative_improvement, work_estimate


def experiment_urls(request, experiment) -> dict[str, str]:
    urls = {
        "self": reverse("api:experiment", args=[experiment.pk]),
        "cancel": reverse("api:experiment-cancel", args=[experiment.pk]),
        "page": experiment.get_absolute_url(),
    }
    return {name: request.build_absolute_uri(url) for name, url in urls.items()}


def experiment_summary(request, experiment) -> dict:
    return {**experiment.state_dict(), "urls": experiment_urls(request, experiment)}


def experiment_created(request, experiment) -> dict:
    """The summary of a new experiment with the work its configuration asks for (see work_estimate)."""
    estimate = work_estimate(load_config(experiment.config, check_data=False))
    return {**experiment_summary(request, experiment), "work_estimate": estimate}


def experiment_detail(request, experiment) -> dict:
    """The experiment's snapshot (row, generations, latest candidates), with download links for
    each learned loss."""
    snapshot = experiment.snapshot()
    del snapshot["type"]
    snapshot["experiment"]["urls"] = experiment_urls(request, experiment)
    losses = experiment.learned_losses.with_improvement().select_related("experiment__owner").order_by("rank")
    snapshot["learned_losses"] = [loss_entry(request, loss) for loss in losses]
    return snapshot


def leaderboard_entry(request, learned_loss) -> dict:
    """A leaderboard row (annotated by `ranked_by`): what it is ranked by first, then `loss_entry`.
    `meta_test_improvement` is the relative drop of the mean test metric the ranking uses, at each
    loss's own best learning rate where the meta-test compared so (`meta_test_improvement_basis`
    "tuned"), else at the search's rate ("search_rate"; None: not meta-tested)."""
    entry = loss_entry(request, learned_loss)
    basis = None if learned_loss.untested else ("tuned" if learned_loss.test_tuned else "search_rate")
    return {"id": entry.pop("id"), "meta_test_improvement": learned_loss.test_improvement,
            "meta_test_improvement_basis": basis,
            "meta_test_improvement_at_search_rate": learned_loss.fixed_improvement,
            **entry, "method_label": learned_loss.method_label}


def download_urls(request, learned_loss) -> dict[str, str]:
    return {fmt: request.build_absolute_uri(reverse("api:loss-download", args=[learned_loss.pk, fmt]))
            for fmt in EXPORT_FORMATS}


#: The fields of one comparison of a meta-test record that the API gives (a record holds more: every seed's value).
COMPARISON_FIELDS = ("metric", "learned_mean", "learned_std", "baseline_mean", "baseline_std", "wins", "t_statistic",
                     "p_value")


def comparison_fields(comparison) -> dict | None:
    """One comparison of a meta-test record as the API gives it: the means, wins, test, the seed
    count, relative improvement and (at tuned rates) the rates picked; None where there is none."""
    if not isinstance(comparison, dict):
        return None
    rates = {k: comparison.get(k) for k in ("learned_lr", "baseline_lr") if k in comparison}
    return {**rates, **{k: comparison.get(k) for k in COMPARISON_FIELDS},
            "seeds": len(comparison.get("seeds") or ()), "relative_improvement": relative_improvement(comparison)}


def meta_test_fields(learned_loss) -> dict:
    """The held-out meta-test as the API leads with it: the verdict in plain words, the comparison
    at each loss's own best learning rate (None where the meta-test compared only at the search's
    rate), then the one at the search's learning rate (the paper's protocol). The whole record
    stays under "meta_test"."""
    record = learned_loss.meta_test if isinstance(learned_loss.meta_test, dict) else None
    return {"verdict": learned_loss.verdict.to_dict(),
            "tuned_comparison": comparison_fields(record and record.get("tuned_lr")),
            "fixed_rate_comparison": comparison_fields(record)}


def loss_entry(request, learned_loss) -> dict:
    """A learned loss (annotated `with_improvement`): its meta-test's verdict and comparisons first
    (`meta_test_fields`), its improvement over the baseline in validation (lower fitness is better,
    so positive means better), author, date and download links."""
    experiment = learned_loss.experiment
    return {
        "id": learned_loss.pk, **meta_test_fields(learned_loss), **learned_loss.to_dict(),
        "improvement": learned_loss.improvement,
        "relative_improvement": learned_loss.relative_improvement,
        "experiment_name": experiment.name, "author": experiment.owner.get_username(),
        "created_at": learned_loss.created_at.isoformat(), "downloads": download_urls(request, learned_loss),
        "experiment_url": request.build_absolute_uri(reverse("api:experiment", args=[experiment.pk])),
    }


def transfer_entry(request, run) -> dict:
    """A transfer run with its API address and the learned loss it tests."""
    return {**run.to_dict(), "url": request.build_absolute_uri(reverse("api:transfer", args=[run.pk])),
            "loss_url": request.build_absolute_uri(reverse("api:loss-transfers", args=[run.learned_loss_id]))}
