"""Skills: reusable assets (prompts, workflows, tools, distilled experience) left by completed
work. Versioned and immutable; each version pins the versions of the skills it depends on (with a
declared royalty share), so the version graph is acyclic by construction; publishing also refuses
cycles between skills. Reuse counts and royalties earned are cached counters, rebuilt from
``SkillUsage`` and ``SkillRoyalty`` rows."""

from __future__ import annotations

from django.db import models
from pgvector.django import HnswIndex, VectorField

from agents_registry.models.participants import Participant
from agents_registry.models.profiles import EMBEDDING_DIMENSIONS


class Skill(models.Model):
    class Kind(models.TextChoices):
        PROMPT = "prompt", "Prompt"
        WORKFLOW = "workflow", "Workflow"
        TOOL = "tool", "Tool"
        EXPERIENCE = "experience", "Distilled experience"

    creator = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="skills")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    title = models.CharField(max_length=160)
    slug = models.SlugField(max_length=80, unique=True)
    reuse_count = models.PositiveIntegerField(default=0)
    royalties_earned = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created_at", "-id")

    def __str__(self) -> str:
        return self.title


class SkillVersion(models.Model):
    skill = models.ForeignKey(Skill, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    body = models.JSONField()  # {"text": ...} for prompts and experience; steps for workflows
    summary = models.TextField()  # the text that is embedded and searched
    provenance_task_ref = models.CharField(max_length=80, blank=True)
    provenance_trace_ref = models.CharField(max_length=80, blank=True)
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS, null=True, blank=True)
    embedding_model = models.CharField(max_length=80, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("skill_id", "-version")
        constraints = [
            models.UniqueConstraint(fields=["skill", "version"], name="skill_version_unique"),
        ]
        indexes = [
            HnswIndex(
                name="skill_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
        ]

    def __str__(self) -> str:
        return f"{self.skill} v{self.version}"


class SkillDependency(models.Model):
    """``version`` uses ``depends_on`` and passes it ``share_basis_points`` of its royalties."""

    version = models.ForeignKey(SkillVersion, on_delete=models.PROTECT, related_name="dependencies")
    depends_on = models.ForeignKey(
        SkillVersion, on_delete=models.PROTECT, related_name="dependents"
    )
    share_basis_points = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["version", "depends_on"], name="skill_dependency_unique"
            ),
            models.CheckConstraint(
                name="skill_dependency_share_range",
                condition=models.Q(share_basis_points__gte=0, share_basis_points__lte=10_000),
            ),
            models.CheckConstraint(
                name="skill_dependency_not_self",
                condition=~models.Q(version=models.F("depends_on")),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.version_id} -> {self.depends_on_id} ({self.share_basis_points} bp)"


class SkillUsage(models.Model):
    """A skill version declared as used by an accepted delivery; one row per task and version."""

    version = models.ForeignKey(SkillVersion, on_delete=models.PROTECT, related_name="usages")
    task_ref = models.CharField(max_length=80)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["version", "task_ref"], name="skill_usage_once_per_task"
            )
        ]

    def __str__(self) -> str:
        return f"{self.version_id} used by {self.task_ref}"


class SkillRoyalty(models.Model):
    """Credits a skill earned its creator from one task's settlement."""

    skill = models.ForeignKey(Skill, on_delete=models.PROTECT, related_name="royalties")
    task_ref = models.CharField(max_length=80)
    owner_ref = models.CharField(max_length=80)
    amount = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["skill", "task_ref", "owner_ref"], name="skill_royalty_once_per_task"
            ),
            models.CheckConstraint(name="skill_royalty_positive", condition=models.Q(amount__gt=0)),
        ]

    def __str__(self) -> str:
        return f"{self.amount} to {self.owner_ref} for {self.task_ref}"
