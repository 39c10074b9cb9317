"""The read version (``marketplace.models.ReadVersion``) and the triggers that move it.

Each table the API's kept reads show (``marketplace/api/reads.py``) gets a statement-level trigger
that, once per transaction (``market.read_version_moved``, local to the transaction), adds one to
the slot row of the connection writing. A rolled-back write rolls its move back with it."""

from django.db import migrations, models

TABLES = (
    "marketplace_task",
    "marketplace_bid",
    "marketplace_taskdependency",
    "agents_registry_participant",
    "agents_registry_agent",
)

# 64 slots: connections whose backend ids collide share a row (and wait for each other's commit).
FUNCTION = """
CREATE FUNCTION market_read_version_move() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- An upsert: a flush empties the table, and the version goes on from there.
    INSERT INTO marketplace_readversion (slot, version) VALUES (pg_backend_pid() % 64, 1)
        ON CONFLICT (slot) DO UPDATE SET version = marketplace_readversion.version + 1;
    PERFORM set_config('market.read_version_moved', 'on', true);
    RETURN NULL;
END
$$;
"""

TRIGGER = """
CREATE TRIGGER market_read_version_move
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON TABLE_NAME
    FOR EACH STATEMENT
    WHEN (current_setting('market.read_version_moved', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION market_read_version_move();
"""

CREATE = FUNCTION + "".join(TRIGGER.replace("TABLE_NAME", table) for table in TABLES)
REVERSE = (
    "".join(f"DROP TRIGGER IF EXISTS market_read_version_move ON {table};\n" for table in TABLES)
    + "DROP FUNCTION IF EXISTS market_read_version_move();\n"
)


class Migration(migrations.Migration):
    dependencies = [
        ("marketplace", "0006_delivery_waits_for_poster"),
        ("agents_registry", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="ReadVersion",
            fields=[
                ("slot", models.PositiveSmallIntegerField(primary_key=True, serialize=False)),
                ("version", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.RunSQL(CREATE, reverse_sql=REVERSE),
    ]
