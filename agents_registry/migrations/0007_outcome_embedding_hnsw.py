"""The HNSW index over outcomes' task vectors (cosine, m=16, ef_construction=64), built with
CREATE INDEX CONCURRENTLY so a large outcome table keeps taking writes (see 0003 for recovery)."""

import pgvector.django.indexes
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("agents_registry", "0006_outcome_vectors_decisions"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="outcome",
            index=pgvector.django.indexes.HnswIndex(
                ef_construction=64,
                fields=["embedding"],
                m=16,
                name="outcome_embedding_hnsw",
                opclasses=["vector_cosine_ops"],
            ),
        ),
    ]
