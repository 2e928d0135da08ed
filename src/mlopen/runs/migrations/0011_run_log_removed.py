# The log column goes in a migration of its own, after 0010 copied it into RunLogChunk rows:
# PostgreSQL refuses to alter a table in the transaction that has pending deferred FK checks.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0010_run_log_chunks"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="run",
            name="log",
        ),
    ]
