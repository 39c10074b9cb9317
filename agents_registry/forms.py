"""HTML forms of the registry pages; the services do the real validation."""

from __future__ import annotations

from typing import Any

from django import forms

from agents_registry.models import POLICY_FLAGS, Agent, ApiKey


def split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


class ProfileForm(forms.Form):
    description = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text="What the agent does, in the words a task poster would use.",
    )
    tags = forms.CharField(required=False, help_text="Comma-separated skills.")
    input_formats = forms.CharField(required=False, help_text="Comma-separated, e.g. pdf, csv.")
    output_formats = forms.CharField(required=False, help_text="Comma-separated, e.g. json.")
    price_per_task = forms.IntegerField(min_value=0, help_text="Credits per task.")
    price_per_unit = forms.IntegerField(min_value=0, required=False)
    unit_name = forms.CharField(required=False, help_text="e.g. page, 1k tokens")
    expected_latency_seconds = forms.IntegerField(min_value=1, initial=600)
    limitations = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    policy_flags = forms.MultipleChoiceField(
        choices=[(flag, flag.replace("_", " ")) for flag in sorted(POLICY_FLAGS)],
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )

    def profile_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            "description": data["description"],
            "tags": split_list(data.get("tags") or ""),
            "input_formats": split_list(data.get("input_formats") or ""),
            "output_formats": split_list(data.get("output_formats") or ""),
            "price_per_task": data["price_per_task"],
            "price_per_unit": data.get("price_per_unit"),
            "unit_name": data.get("unit_name") or "",
            "expected_latency_seconds": data["expected_latency_seconds"],
            "limitations": data.get("limitations") or "",
            "policy_flags": data.get("policy_flags") or [],
        }


class AgentRegisterForm(ProfileForm):
    name = forms.CharField(max_length=120)
    # An A2A agent is registered from its Agent Card (workers: /agents/new/a2a/).
    runtime = forms.ChoiceField(
        choices=[c for c in Agent.Runtime.choices if c[0] != Agent.Runtime.A2A],
        initial=Agent.Runtime.EXTERNAL,
    )
    concurrency_limit = forms.IntegerField(min_value=1, max_value=1000, initial=4)
    field_order = ["name", "runtime", "concurrency_limit"]


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=50)
    scopes = forms.MultipleChoiceField(
        choices=ApiKey.Scope.choices, widget=forms.CheckboxSelectMultiple
    )


class PersonalTokenForm(forms.Form):
    name = forms.CharField(max_length=50, help_text="What the token is for, e.g. my-poster-script")
    scopes = forms.MultipleChoiceField(
        choices=ApiKey.Scope.choices, widget=forms.CheckboxSelectMultiple
    )
    expires_in_days = forms.TypedChoiceField(
        label="Expires",
        coerce=int,
        choices=[(30, "in 30 days"), (90, "in 90 days"), (365, "in a year"), (0, "never")],
        initial=90,
    )


class SkillPublishForm(forms.Form):
    kind = forms.ChoiceField(choices=[])
    title = forms.CharField(max_length=160)
    body = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8}),
        help_text='The prompt, tool description or lesson; for a workflow, JSON: {"steps": '
        '[{"id": "a", "action": "...", "after": []}]}.',
    )
    dependencies = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One per line: <skill slug> <share of your royalties in %>, e.g. pdf-tables 30",
    )
    provenance_task_ref = forms.CharField(required=False, max_length=80, label="From task")
    provenance_trace_ref = forms.CharField(required=False, max_length=80, label="From trace")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from agents_registry.models import Skill

        super().__init__(*args, **kwargs)
        kind = self.fields["kind"]
        assert isinstance(kind, forms.ChoiceField)  # declared so above
        kind.choices = Skill.Kind.choices

    def clean_body(self) -> str | dict:
        import json

        body = self.cleaned_data["body"]
        if self.data.get("kind") == "workflow":
            try:
                return json.loads(body)
            except json.JSONDecodeError as error:
                raise forms.ValidationError(f"A workflow is JSON: {error}.") from error
        return body

    def clean_dependencies(self) -> list[tuple[int, int]]:
        from decimal import Decimal, InvalidOperation

        from agents_registry.models import Skill

        parsed = []
        for number, line in enumerate(self.cleaned_data.get("dependencies", "").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                slug, percent = parts[0], Decimal(parts[1].rstrip("%"))
            except (IndexError, InvalidOperation) as error:
                raise forms.ValidationError(f"Line {number}: write '<slug> <percent>'.") from error
            skill = Skill.objects.filter(slug=slug).first()
            if skill is None:
                raise forms.ValidationError(f"Line {number}: no skill {slug!r}.")
            basis_points = percent * 100
            if basis_points != int(basis_points):
                raise forms.ValidationError(f"Line {number}: at most two decimals.")
            parsed.append((skill.pk, int(basis_points)))
        return parsed
