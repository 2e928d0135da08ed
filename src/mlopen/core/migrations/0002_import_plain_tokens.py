"""Tokens from before hashing (DRF's authtoken table, keys in plain text) become hashed API tokens.

They keep working: each is imported under its digest, named "token from before hashing", and its
plain-text row is deleted. rest_framework.authtoken is no longer installed, so its table is read
with SQL when it exists (an installation from before this change) and left empty.
"""

import hashlib
from datetime import UTC

from django.db import migrations
from django.utils import timezone
from django.utils.dateparse import parse_datetime

LEGACY_TABLE = "authtoken_token"


def import_plain_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if LEGACY_TABLE not in connection.introspection.table_names():
        return
    ApiToken = apps.get_model("core", "ApiToken")
    table = connection.ops.quote_name(LEGACY_TABLE)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {connection.ops.quote_name('key')}, user_id, created FROM {table}")
        rows = cursor.fetchall()
    for key, user_id, created in rows:
        if isinstance(created, str):
            created = parse_datetime(created)
        if created is None:
            created = timezone.now()
        elif timezone.is_naive(created):
            created = timezone.make_aware(created, UTC)
        digest = hashlib.sha256(key.encode()).hexdigest()
        if not ApiToken.objects.filter(digest=digest).exists():
            ApiToken.objects.create(
                user_id=user_id, name="token from before hashing", prefix=key[:12], digest=digest, created_at=created
            )
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table}")


class Migration(migrations.Migration):
    dependencies = [("core", "0001_api_tokens")]
    operations = [migrations.RunPython(import_plain_tokens, migrations.RunPython.noop)]
