"""The rules the database itself enforces: the posting function and the triggers (ledger/sql.py)."""

from django.db import migrations

from ledger import sql


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial")]

    operations = [
        migrations.RunSQL(sql=sql.POST_FUNCTION + sql.TRIGGERS, reverse_sql=sql.REVERSE),
    ]
