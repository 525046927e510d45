"""Generated secrets: created once, kept encrypted in Pulumi state, marked secret everywhere they flow."""

from __future__ import annotations

import pulumi
import pulumi_random as random

# Characters that mean the same in a single-quoted shell word, a systemd EnvironmentFile and a URL's
# password part need no escaping anywhere: letters and digits, plus a few safe symbols for the Django key.
DJANGO_KEY_SPECIALS = "!#%*+-.:=?@^_~"


class AppSecrets(pulumi.ComponentResource):
    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None, *, redis: bool = False):
        super().__init__("djangoship:index:AppSecrets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.db_password = random.RandomPassword(f"{name}-db-password", length=32, special=False, opts=child)
        self.django_secret_key = random.RandomPassword(
            f"{name}-django-secret-key", length=64, special=True, override_special=DJANGO_KEY_SPECIALS, opts=child
        )
        self.admin_password = random.RandomPassword(f"{name}-admin-password", length=24, special=False, opts=child)
        # `result` is secret by the provider's schema; wrapping says so here too, where the values start
        # flowing, so no later refactoring can let one out in plain text.
        self.db_password_value: pulumi.Output[str] = pulumi.Output.secret(self.db_password.result)
        self.django_secret_key_value: pulumi.Output[str] = pulumi.Output.secret(self.django_secret_key.result)
        self.admin_password_value: pulumi.Output[str] = pulumi.Output.secret(self.admin_password.result)
        # `redis: true`: Redis's password, letters and digits (it sits in REDIS_URL unescaped).
        self.redis_password_value: pulumi.Output[str] | None = None
        if redis:
            self.redis_password = random.RandomPassword(f"{name}-redis-password", length=32, special=False, opts=child)
            self.redis_password_value = pulumi.Output.secret(self.redis_password.result)
        self.register_outputs({})
