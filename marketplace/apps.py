from django.apps import AppConfig


class MarketplaceConfig(AppConfig):
    name = "marketplace"
    verbose_name = "Marketplace"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from agents_registry.models import Participant
        from marketplace.models import Bid, Task, TaskDependency
        from marketplace.read_cache import market_changed

        # What the API's kept reads show (read_cache); QuerySet.update and bulk_create callers
        # call market_changed themselves.
        for model in (Task, Bid, TaskDependency, Participant):
            uid = f"read-cache-{model.__name__}"
            post_save.connect(market_changed, sender=model, dispatch_uid=uid)
            post_delete.connect(market_changed, sender=model, dispatch_uid=uid)
