"""API tokens for the API tests."""

import pytest

from lfl_web.api.models import ApiToken


@pytest.fixture
def key(user):
    return ApiToken.objects.issue(user, "tests")[1]


@pytest.fixture
def other_key(other_user):
    return ApiToken.objects.issue(other_user, "tests")[1]
