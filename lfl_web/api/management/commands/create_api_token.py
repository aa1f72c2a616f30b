"""`python manage.py create_api_token USERNAME [--name NAME]`: print a new API key, once."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from lfl_web.api.models import ApiToken


class Command(BaseCommand):
    help = "Create an API token for USERNAME and print its key (shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="What the token is for (shown in the admin).")

    def handle(self, *args, username, name, **options):
        user = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).first()
        if user is None:
            # The first mistake of a fresh install (only `admin` exists): say how to add the user.
            raise CommandError(
                f"no user named {username!r}; add one in the admin (/admin/auth/user/add/, signed in as "
                f"staff) or with `python manage.py createsuperuser --username {username}` (an administrator), "
                "then run this again")
        if not user.is_active:
            raise CommandError(f"user {username!r} is inactive; its tokens would be refused")
        if len(name) > 100:
            raise CommandError(f"--name must be at most 100 characters, got {len(name)}")
        token, key = ApiToken.objects.issue(user, name)
        self.stderr.write(f"Token {token.prefix}… for {username}. Keep the key secret; it is not shown again:")
        self.stdout.write(key)
