"""Outcomes recorded before they carried their task's vector: copy it from the task (the
registry's outcome names its task by ledger reference, ``task:<id>``), and link each outcome to
the latest decision that chose its agent for that task before the outcome. Lives here, not in the
registry, because only the market knows what a ``task:`` reference points to."""

from django.db import migrations


def backfill(apps, schema_editor):
    outcome = apps.get_model("agents_registry", "Outcome")._meta.db_table
    decision = apps.get_model("agents_registry", "DecisionRecord")._meta.db_table
    task = apps.get_model("marketplace", "Task")._meta.db_table
    quote = schema_editor.quote_name
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(outcome)} o SET embedding = t.embedding,"  # noqa: S608
            f" embedding_model = t.embedding_model FROM {quote(task)} t"
            " WHERE o.embedding IS NULL AND t.embedding IS NOT NULL"
            " AND o.task_ref = 'task:' || t.id::text"
        )
        cursor.execute(
            f"UPDATE {quote(outcome)} o SET decision_id = ("  # noqa: S608
            f" SELECT d.id FROM {quote(decision)} d WHERE d.subject_ref = o.task_ref"
            " AND d.chosen_agent_id = o.agent_id AND d.created_at <= o.created_at"
            " ORDER BY d.created_at DESC, d.id DESC LIMIT 1)"
            " WHERE o.decision_id IS NULL"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("marketplace", "0007_read_version_triggers"),
        ("agents_registry", "0006_outcome_vectors_decisions"),
    ]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
