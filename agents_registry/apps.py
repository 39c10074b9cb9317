from django.apps import AppConfig


class AgentsRegistryConfig(AppConfig):
    name = "agents_registry"
    verbose_name = "Agents registry"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.urls import register_converter

        from agents_registry.converters import IdConverter

        register_converter(IdConverter, "id")  # before any URL module is imported
        from django.db.models.signals import post_delete, post_save, pre_delete, pre_save

        from agents_registry.auth_cache import row_about_to_change as changing
        from agents_registry.auth_cache import row_saved_or_deleted as changed
        from agents_registry.models import Agent, ApiKey, Participant

        # What an API-key lookup reads (auth_cache); QuerySet.update callers call it themselves.
        for model in (ApiKey, Participant, Agent, get_user_model()):
            uid = f"auth-cache-{model.__name__}"
            pre_save.connect(changing, sender=model, dispatch_uid=uid)
            pre_delete.connect(changing, sender=model, dispatch_uid=uid)
            post_save.connect(changed, sender=model, dispatch_uid=uid)
            post_delete.connect(changed, sender=model, dispatch_uid=uid)
