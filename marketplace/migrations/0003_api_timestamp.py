"""``api_timestamp(timestamptz)``: a timestamp as the API writes it (DRF's DateTimeField with
TIME_ZONE = "UTC": ISO 8601 in UTC with "Z", microseconds only when there are any), for the
JSON that ``marketplace/api/reads.py`` has PostgreSQL build."""

from django.db import migrations

CREATE = """
CREATE FUNCTION api_timestamp(value timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN date_part('microseconds', value)::bigint % 1000000 = 0
            THEN to_char(value AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
        ELSE to_char(value AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("marketplace", "0002_task_draft_state")]

    operations = [
        migrations.RunSQL(CREATE, reverse_sql="DROP FUNCTION api_timestamp(timestamptz);"),
    ]
