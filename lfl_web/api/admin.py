"""Tokens in the admin: add one (its key is shown once, in the confirmation message), or delete it
to revoke it. A key cannot be seen or edited afterwards: only its hash is stored."""

from django.contrib import admin, messages

from lfl_web.api.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "name", "user", "created", "last_used")
    list_filter = ("created", "last_used")
    search_fields = ("name", "prefix", "user__username")
    readonly_fields = ("prefix", "created", "last_used")

    def get_fields(self, request, obj=None):
        return ("user", "name") if obj is None else ("user", "name", "prefix", "created", "last_used")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("user", *self.readonly_fields)

    def save_model(self, request, obj, form, change):
        key = None if change else obj.set_new_key()
        super().save_model(request, obj, form, change)
        if key:
            self.message_user(
                request, f"The new token's key is {key} — copy it now: it is not stored and cannot be shown again.",
                messages.WARNING,
            )
