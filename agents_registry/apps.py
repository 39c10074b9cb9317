from django.apps import AppConfig


class AgentsRegistryConfig(AppConfig):
    name = "agents_registry"
    verbose_name = "Agents registry"

    def ready(self) -> None:
        from django.urls import register_converter

        from agents_registry.converters import IdConverter

        register_converter(IdConverter, "id")  # before any URL module is imported
