"""HNSW indexes (cosine, m=16, ef_construction=64) built with CREATE INDEX CONCURRENTLY.

Concurrent builds do not block writes to a large, live table, and cannot run inside a
transaction, hence ``atomic = False``. A failed concurrent build leaves an INVALID index; rerunning
the migration after ``DROP INDEX CONCURRENTLY`` of it is the recovery.
"""

import pgvector.django.indexes
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("agents_registry", "0002_profiles_outcomes_decisions_skills"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="capabilityprofile",
            index=pgvector.django.indexes.HnswIndex(
                condition=models.Q(("is_current", True)),
                ef_construction=64,
                fields=["embedding"],
                m=16,
                name="profile_embedding_hnsw",
                opclasses=["vector_cosine_ops"],
            ),
        ),
        AddIndexConcurrently(
            model_name="skillversion",
            index=pgvector.django.indexes.HnswIndex(
                ef_construction=64,
                fields=["embedding"],
                m=16,
                name="skill_embedding_hnsw",
                opclasses=["vector_cosine_ops"],
            ),
        ),
    ]
