"""The one settings module, driven by environment variables (see ``.env.example``).

A wrong value stops every entry point (manage.py, the ASGI server, Celery, pytest) with a one-line
message naming the variable, not a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import dj_database_url

from marketplace.env import (
    ConfigurationError,
    check_url,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent


def _redis_url_with_db(url: str, database: int) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = dict(parse_qsl(parts.query))
        query["db"] = str(database)
        return f"unix://{parts.path}?{urlencode(query)}"
    return urlunsplit(parts._replace(path=f"/{database}"))


def _celery_broker_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = dict(parse_qsl(parts.query))
        database = query.pop("db", "0")
        return f"redis+socket://{parts.path}?virtual_host={database}"
    return url


try:
    DEBUG = env_bool("DEBUG", False)
    DATA_DIR = Path(env_str("DATA_DIR", str(BASE_DIR / ".data"))).resolve()

    SECRET_KEY = env_str("SECRET_KEY")
    if not SECRET_KEY:
        if not DEBUG:
            raise ConfigurationError(
                "SECRET_KEY is required when DEBUG is off; set it to a long random string"
            )
        SECRET_KEY = "django-insecure-development-only-key-never-use-in-production"  # noqa: S105
    elif not DEBUG and len(SECRET_KEY) < 50:
        raise ConfigurationError("SECRET_KEY must be at least 50 characters when DEBUG is off")

    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])
    CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
    SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000")
    # Where pages open websockets: empty = the page's own origin (the web server answers both).
    WEBSOCKET_BASE_URL = env_str("WEBSOCKET_BASE_URL").rstrip("/")
    # Threads per web process that run Django's views (marketplace/asgi.py).
    WEB_THREADS = env_int("WEB_THREADS", 4, minimum=1)
    HTTPS = env_bool("HTTPS", False)
    _ssl_redirect = env_bool("SECURE_SSL_REDIRECT", HTTPS)
    _hsts_seconds = env_int("SECURE_HSTS_SECONDS", 31_536_000 if HTTPS else 0, minimum=0)

    _database_url = env_str("DATABASE_URL")
    if _database_url:
        check_url("DATABASE_URL", _database_url, ("postgres", "postgresql", "pgsql"))
    _redis_url = env_str("REDIS_URL")
    if _redis_url:
        check_url("REDIS_URL", _redis_url, ("redis", "rediss", "unix"))
    REDIS_DATABASE_BASE = env_int("REDIS_DATABASE_BASE", 0, minimum=0)
    # Each Redis role may have a server of its own (a managed service, a cluster per role); unset,
    # each is a database number on REDIS_URL's server. The broker may also be RabbitMQ. Celery's
    # command line reads BROKER_URL itself, unconverted: so a socket is spelled as kombu reads it.
    _broker_url = env_str("BROKER_URL")
    if _broker_url:
        check_url("BROKER_URL", _broker_url, ("redis", "rediss", "redis+socket", "amqp", "amqps"))
    _cache_url = env_str("CACHE_URL")
    if _cache_url:
        check_url("CACHE_URL", _cache_url, ("redis", "rediss", "unix"))
    _channel_layer_url = env_str("CHANNEL_LAYER_URL")
    if _channel_layer_url:
        check_url("CHANNEL_LAYER_URL", _channel_layer_url, ("redis", "rediss", "unix"))
    # "transaction": the database URL is a pooler in transaction mode (PgBouncer): no state may
    # outlive a transaction, so nothing is prepared and no startup options are sent.
    DATABASE_POOLER = env_choice("DATABASE_POOLER", "none", ("none", "transaction"))
    # Deliverables go to this S3 bucket when set (any S3 API: AWS, MinIO, Ceph...); local disk
    # (DATA_DIR/media) otherwise. Downloads are redirects to URLs signed for this long.
    STORAGE_S3_BUCKET = env_str("STORAGE_S3_BUCKET")
    STORAGE_S3_ENDPOINT_URL = env_str("AWS_S3_ENDPOINT_URL")
    STORAGE_S3_REGION = env_str("AWS_S3_REGION_NAME", "us-east-1")
    STORAGE_SIGNED_URL_SECONDS = env_int("STORAGE_SIGNED_URL_SECONDS", 60, minimum=1)
    # Prometheus metrics: /metrics answers requests bearing this token (empty: /metrics is off);
    # workers and beat serve theirs on METRICS_PORT (0: off), an internal port.
    METRICS_TOKEN = env_str("METRICS_TOKEN")
    METRICS_PORT = env_int("METRICS_PORT", 0, minimum=0)
    METRICS_HOST = env_str("METRICS_HOST", "127.0.0.1")
    DATABASE_CONNECTION_MAX_AGE = env_int("DATABASE_CONNECTION_MAX_AGE", 60, minimum=0)

    STRIPE_SECRET_KEY = env_str("STRIPE_SECRET_KEY")
    STRIPE_PUBLISHABLE_KEY = env_str("STRIPE_PUBLISHABLE_KEY")
    STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET")
    STRIPE_API_BASE = env_str("STRIPE_API_BASE")  # a localstripe URL in tests; empty = Stripe

    EMBEDDING_BACKEND = env_choice("EMBEDDING_BACKEND", "minilm", ("minilm", "hashing", "openai"))
    EMBEDDING_OPENAI_BASE_URL = env_str("EMBEDDING_OPENAI_BASE_URL")
    EMBEDDING_OPENAI_MODEL = env_str("EMBEDDING_OPENAI_MODEL", "text-embedding-3-small")
    EMBEDDING_OPENAI_API_KEY = env_str("EMBEDDING_OPENAI_API_KEY")
    if EMBEDDING_BACKEND == "openai" and not EMBEDDING_OPENAI_BASE_URL:
        raise ConfigurationError("EMBEDDING_BACKEND=openai needs EMBEDDING_OPENAI_BASE_URL")

    PLATFORM_FEE_BASIS_POINTS = env_int("PLATFORM_FEE_BASIS_POINTS", 500, minimum=0)
    ROYALTY_CAP_BASIS_POINTS = env_int("ROYALTY_CAP_BASIS_POINTS", 1000, minimum=0)
    REVIEW_WINDOW_HOURS = env_int("REVIEW_WINDOW_HOURS", 72, minimum=0)
    STARTER_CREDITS = env_int("STARTER_CREDITS", 10_000, minimum=0)

    # Outcome-grounded matching (agents_registry/estimates.py): the default poster preference
    # (0 cheapest likely to pass .. 1 most likely to pass within budget), how many of an agent's
    # nearest past tasks (among its most recent outcomes) form its evidence, the distance within
    # which a past task counts fully (that of the task's MATCH_NEIGHBOURHOOD-th nearest past task,
    # at most MATCH_KERNEL_RADIUS) and the width of the decay beyond it, the weight
    # in outcomes of the agent's global record as the prior, and the share of the draw used.
    MATCH_PREFERENCE = env_float("MATCH_PREFERENCE", 0.6)
    MATCH_NEIGHBOURS = env_int("MATCH_NEIGHBOURS", 12, minimum=1)
    MATCH_RECENT_OUTCOMES = env_int("MATCH_RECENT_OUTCOMES", 500, minimum=1)
    MATCH_NEIGHBOURHOOD = env_int("MATCH_NEIGHBOURHOOD", 50, minimum=1)
    MATCH_KERNEL_RADIUS = env_float("MATCH_KERNEL_RADIUS", 0.75)
    MATCH_KERNEL_WIDTH = env_float("MATCH_KERNEL_WIDTH", 0.1)
    MATCH_GLOBAL_WEIGHT = env_float("MATCH_GLOBAL_WEIGHT", 3.0)
    MATCH_EXPLORATION = env_float("MATCH_EXPLORATION", 0.5)

    OUTBOUND_HTTP_ALLOWED_HOSTS = env_list("OUTBOUND_HTTP_ALLOWED_HOSTS", [])
    LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))
    LOG_FORMAT = env_choice("LOG_FORMAT", "text", ("text", "json"))
    # Celery's line per task received and succeeded (beat sends one every few seconds) and beat's
    # per send; failures log at ERROR whatever this says.
    TASK_LOG_LEVEL = env_choice("TASK_LOG_LEVEL", "WARNING", ("DEBUG", "INFO", "WARNING", "ERROR"))

    # The task market: the award hook that starts hosted agents (a dotted path to
    # ``handler(task=..., assignee=...)``, called inside the award's transaction), upload limits,
    # the write throttle, and the escrow expectations the ledger's reconciliation checks.
    MARKET_AWARD_HANDLER = env_str(
        "MARKET_AWARD_HANDLER", "workers.services.execution_create_for_award"
    )
    MARKET_POST_HANDLER = env_str("MARKET_POST_HANDLER", "workers.services.hosted_bids_queue")
    MARKET_ACCEPT_HANDLER = env_str("MARKET_ACCEPT_HANDLER", "workers.services.skill_distill_queue")
    # Called inside each revision request (by the poster, or after failed checks) with
    # ``handler(task=..., delivery=...)``: a hosted assignee runs again with the poster's message.
    MARKET_REVISION_HANDLER = env_str(
        "MARKET_REVISION_HANDLER", "workers.services.execution_create_for_revision"
    )
    # Work in progress that has not moved for this long is stalled: its poster may cancel it
    # (refund) or, when something was delivered, escalate it to staff.
    MARKET_STALL_HOURS = env_int("MARKET_STALL_HOURS", 72, minimum=1)
    # A delivery whose checks failed goes back to the assignee at the end of its review window,
    # at most this many times per task; after that it waits for the poster.
    MARKET_AUTOMATIC_REVISIONS = env_int("MARKET_AUTOMATIC_REVISIONS", 2, minimum=0)
    HOSTED_AUTO_BID_LIMIT = env_int("HOSTED_AUTO_BID_LIMIT", 2, minimum=0)
    HOSTED_AUTO_BID_MIN_SIMILARITY = env_float("HOSTED_AUTO_BID_MIN_SIMILARITY", 0.3)
    # Open tasks no hosted agent bid on (they were all busy) are offered again this often, for
    # this long after they were posted.
    HOSTED_BIDS_RETRY_INTERVAL_SECONDS = env_float("HOSTED_BIDS_RETRY_INTERVAL_SECONDS", 30.0)
    HOSTED_BIDS_RETRY_HOURS = env_int("HOSTED_BIDS_RETRY_HOURS", 24, minimum=1)
    MARKET_MAX_FILE_BYTES = env_int("MARKET_MAX_FILE_BYTES", 10 * 1024 * 1024, minimum=1)
    MARKET_WRITE_RATE = env_str("MARKET_WRITE_RATE", "600/minute")
    # The API's task list and detail answers kept in Redis between changes (read_cache.py).
    MARKET_READ_CACHE = env_bool("MARKET_READ_CACHE", True)
    LEDGER_ESCROW_EXPECTATIONS = "marketplace.selectors.expected_escrows"

    # Hosted agents (workers/): time limits are per agent (runtime_config) with these defaults;
    # the lease of a running execution is its hard time limit plus a margin, after which the
    # reaper re-queues it (the worker died). Hard limits stay below the visibility timeout.
    WORKERS_SOFT_TIME_LIMIT_SECONDS = env_int("WORKERS_SOFT_TIME_LIMIT_SECONDS", 120, minimum=1)
    WORKERS_HARD_TIME_LIMIT_SECONDS = env_int("WORKERS_HARD_TIME_LIMIT_SECONDS", 150, minimum=2)
    WORKERS_MAX_TIME_LIMIT_SECONDS = 1800  # per-agent limits are capped here, well under 3600
    WORKERS_LEASE_MARGIN_SECONDS = env_int("WORKERS_LEASE_MARGIN_SECONDS", 30, minimum=1)
    WORKERS_QUEUE_LEASE_SECONDS = env_int("WORKERS_QUEUE_LEASE_SECONDS", 60, minimum=1)
    WORKERS_WAITING_LEASE_SECONDS = env_int("WORKERS_WAITING_LEASE_SECONDS", 86_400, minimum=1)
    WORKERS_MAX_ATTEMPTS = env_int("WORKERS_MAX_ATTEMPTS", 3, minimum=1)
    WORKERS_RETRY_BACKOFF_SECONDS = env_float("WORKERS_RETRY_BACKOFF_SECONDS", 2.0)
    WORKERS_RETRY_BACKOFF_MAX_SECONDS = env_float("WORKERS_RETRY_BACKOFF_MAX_SECONDS", 300.0)
    WORKERS_REAPER_INTERVAL_SECONDS = env_float("WORKERS_REAPER_INTERVAL_SECONDS", 15.0)
    # A running attempt's worker renews its lease every interval to now + the heartbeat lease
    # (capped by the time limit): a dead worker's attempt is re-queued a heartbeat lease later.
    WORKERS_HEARTBEAT_INTERVAL_SECONDS = env_float("WORKERS_HEARTBEAT_INTERVAL_SECONDS", 10.0)
    WORKERS_HEARTBEAT_LEASE_SECONDS = env_int("WORKERS_HEARTBEAT_LEASE_SECONDS", 40, minimum=2)
    # Attempts lost to the platform (killed workers, the database gone) are given back to the
    # agent this many times per execution; then the task returns to the market, not held
    # against the agent.
    WORKERS_MAX_PLATFORM_FAILURES = env_int("WORKERS_MAX_PLATFORM_FAILURES", 10, minimum=0)
    # Messages to workers go through the outbox (workers/services/outbox.py): the relay sends
    # what the broker did not take this often, and sent rows are kept this long.
    OUTBOX_RELAY_INTERVAL_SECONDS = env_float("OUTBOX_RELAY_INTERVAL_SECONDS", 2.0)
    OUTBOX_KEEP_SENT_HOURS = env_int("OUTBOX_KEEP_SENT_HOURS", 24, minimum=1)
    # The protocols agents speak (marketplace/protocols, workers/runtimes/a2a.py, events): where
    # the MCP server answers (empty = SITE_URL + /mcp, a proxy routing /mcp), its worker threads
    # (each may hold a database connection), and the event subscriptions' delivery policy.
    MCP_URL = env_str("MCP_URL").rstrip("/")
    MCP_THREADS = env_int("MCP_THREADS", 8, minimum=1)
    EVENTS_DISPATCH_INTERVAL_SECONDS = env_float("EVENTS_DISPATCH_INTERVAL_SECONDS", 2.0)
    EVENTS_TIMEOUT_SECONDS = env_float("EVENTS_TIMEOUT_SECONDS", 10.0)
    EVENTS_MAX_ATTEMPTS = env_int("EVENTS_MAX_ATTEMPTS", 10, minimum=1)
    EVENTS_RETRY_BACKOFF_SECONDS = env_float("EVENTS_RETRY_BACKOFF_SECONDS", 30.0)
    EVENTS_RETRY_BACKOFF_MAX_SECONDS = env_float("EVENTS_RETRY_BACKOFF_MAX_SECONDS", 3600.0)
    EVENTS_PAUSE_AFTER_FAILURES = env_int("EVENTS_PAUSE_AFTER_FAILURES", 20, minimum=1)
    EVENTS_MATCH_LIMIT = env_int("EVENTS_MATCH_LIMIT", 50, minimum=1)
    EVENTS_MATCH_MIN_SIMILARITY = env_float("EVENTS_MATCH_MIN_SIMILARITY", 0.3)
    API_RATE_ANON = env_str("API_RATE_ANON", "60/minute")
    API_RATE_USER = env_str("API_RATE_USER", "6000/minute")
    # The largest request bodies the API reads (refused with 413 before reading): JSON, and
    # multipart deliveries (up to ten files of MARKET_MAX_FILE_BYTES and their fields).
    API_MAX_JSON_BYTES = env_int("API_MAX_JSON_BYTES", 5 * 1024 * 1024, minimum=1024)
    API_MAX_MULTIPART_BYTES = env_int(
        "API_MAX_MULTIPART_BYTES", 10 * MARKET_MAX_FILE_BYTES + 1024 * 1024, minimum=1024
    )
    TEST_DATABASE_SUFFIX = env_str("TEST_DATABASE_SUFFIX")

    if not _database_url or not _redis_url:
        from marketplace import embedded

        # Off for the commands that only look at the embedded servers or stop them (manage.py).
        if env_bool("EMBEDDED_SERVICES_START", True):
            _database_url = _database_url or embedded.ensure_postgres(DATA_DIR)
            _redis_url = _redis_url or embedded.ensure_redis(DATA_DIR)
        else:
            _database_url = _database_url or embedded.postgres_url_unstarted(DATA_DIR)
            _redis_url = _redis_url or embedded.redis_url(DATA_DIR)
except ConfigurationError as error:
    sys.exit(f"Configuration error: {error}")
except Exception as error:  # the embedded servers could not start: say why, without a traceback
    sys.exit(f"Could not start the embedded services in {DATA_DIR}: {error}")

DATABASE_URL = _database_url
REDIS_URL = _redis_url
DATABASES = {
    "default": dj_database_url.parse(
        _database_url, conn_max_age=DATABASE_CONNECTION_MAX_AGE, conn_health_checks=True
    )
}
DATABASES["default"]["ENGINE"] = "django.db.backends.postgresql"
# A Unix-socket URL (``...?host=/path``) parses into OPTIONS; HOST is where every tool looks.
if not DATABASES["default"]["HOST"] and "host" in DATABASES["default"]["OPTIONS"]:
    DATABASES["default"]["HOST"] = DATABASES["default"]["OPTIONS"].pop("host")
# TEST_DATABASE_SUFFIX lets several test runs share one server without sharing a database.
DATABASES["default"]["TEST"] = {
    "NAME": f"test_{DATABASES['default']['NAME']}{TEST_DATABASE_SUFFIX}"
}
if DATABASE_POOLER == "transaction":
    # Behind a transaction pooler a server connection is another client's between transactions:
    # a statement prepared on it, or a named server-side cursor, would be lost. psycopg binds
    # on the server without preparing (unnamed statements live within one round trip), and the
    # plan cache setting below only matters for prepared statements, so it is not needed.
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = None
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
else:
    # Django turns psycopg's automatic prepared statements off (for transaction-pooling proxies,
    # DATABASE_POOLER above). The ORM's cursors bind parameters on the client and are never
    # prepared; the few fixed hot statements that bind on the server are
    # prepared after their first uses on each connection (core/prepared.py).
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("prepare_threshold", 2)
    # Those statements keep one generic plan: left to choose, PostgreSQL plans the API's task page
    # anew on every call, and planning costs about as much as running it (BENCHMARKS.md).
    # The ORM's statements are not prepared, so this setting does not touch them.
    DATABASES["default"]["OPTIONS"]["options"] = " ".join(
        filter(
            None,
            [
                DATABASES["default"]["OPTIONS"].get("options"),
                "-c plan_cache_mode=force_generic_plan",
            ],
        )
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "pgtrigger",
    "channels",
    "ledger",
    "agents_registry",
    "marketplace",
    "workers",
]

MIDDLEWARE = [
    "marketplace.metrics.MetricsMiddleware",
    "marketplace.api_guard.ApiGuardMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "marketplace.urls"
ASGI_APPLICATION = "marketplace.asgi.application"
WSGI_APPLICATION = "marketplace.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "marketplace.context_processors.site",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every request otherwise
MEDIA_ROOT = DATA_DIR / "media"  # outside the web root; files are served by views as attachments
STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    if not STORAGE_S3_BUCKET
    else {
        "BACKEND": "storages.backends.s3.S3Storage",
        # Credentials come from boto3's usual places (AWS_ACCESS_KEY_ID..., a role). Objects
        # are private; names are random tokens, so no existence check before each write.
        "OPTIONS": {
            "bucket_name": STORAGE_S3_BUCKET,
            "endpoint_url": STORAGE_S3_ENDPOINT_URL or None,
            "region_name": STORAGE_S3_REGION,
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": STORAGE_SIGNED_URL_SECONDS,
            "file_overwrite": True,
            "signature_version": "s3v4",
        },
    },
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": _cache_url or _redis_url_with_db(REDIS_URL, REDIS_DATABASE_BASE + 1),
    }
}
SESSION_ENGINE = "django.contrib.sessions.backends.db"

# A consumer's receive is a blocking BZPOPMIN of channels_redis's brpop_timeout; redis-py 8's
# default socket timeout is as long, so the read raced the reply and killed idle websockets.
# The read timeout must outlast it (a socket_timeout in the URL's query still wins).
CHANNEL_LAYER_SOCKET_TIMEOUT = 30
CHANNEL_LAYERS: dict[str, dict[str, Any]] = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [
                {
                    "address": _channel_layer_url
                    or _redis_url_with_db(REDIS_URL, REDIS_DATABASE_BASE + 2),
                    "socket_timeout": CHANNEL_LAYER_SOCKET_TIMEOUT,
                }
            ]
        },
    }
}

# Celery: late acknowledgement and a visibility timeout longer than any hard time limit, so a
# killed worker's message is delivered again instead of lost (invariant 7).
CELERY_BROKER_URL = _celery_broker_url(
    _broker_url or _redis_url_with_db(REDIS_URL, REDIS_DATABASE_BASE)
)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
# One beat at a time in the whole deployment: RedBeat keeps the schedule in Redis and holds a
# lock there while it runs; a second beat (a failover) waits for the lock to expire. The lock
# outlives the beat's loop by a few intervals, so a beat killed hard is replaced within that.
CELERY_BEAT_SCHEDULER = "workers.beat.Scheduler"
CELERY_BEAT_MAX_LOOP_INTERVAL = env_int("BEAT_LOOP_SECONDS", 5, minimum=1)
CELERY_REDBEAT_REDIS_URL = env_str("BEAT_URL") or _redis_url_with_db(
    REDIS_URL, REDIS_DATABASE_BASE + 3
)
CELERY_REDBEAT_KEY_PREFIX = env_str("BEAT_KEY_PREFIX", "redbeat")
CELERY_REDBEAT_LOCK_TIMEOUT = 4 * CELERY_BEAT_MAX_LOOP_INTERVAL

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "agents_registry.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON bodies (numbers keep their type: amounts are JSON integers); deliveries also take
    # multipart for files (marketplace/api/deliveries.py).
    "DEFAULT_PARSER_CLASSES": ["marketplace.api_parsers.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "DEFAULT_SCHEMA_CLASS": "marketplace.api_schema.MarketAutoSchema",
    "DEFAULT_PAGINATION_CLASS": "agents_registry.pagination.Pagination",
    "PAGE_SIZE": 20,
    "EXCEPTION_HANDLER": "marketplace.api_errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": [
        "marketplace.throttling.AnonRateThrottle",
        "marketplace.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": API_RATE_ANON,
        "user": API_RATE_USER,
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Agent marketplace API",
    "DESCRIPTION": "Post, bid on, claim, deliver and settle tasks; manage agents and credits.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # ids in API paths (agents_registry.converters.IdConverter): what the converter accepts.
    "PATH_CONVERTER_OVERRIDES": {
        "id": {"type": "integer", "minimum": 0, "maximum": 999_999_999_999_999_999}
    },
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from the installed sidecar package, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "TraceEventKindEnum": "workers.models.TraceEvent.Kind",
        "SkillKindEnum": "agents_registry.models.skills.Skill.Kind",
        "ParticipantKindEnum": "agents_registry.models.participants.Participant.Kind",
        "EventSubscriptionStatusEnum": "workers.models.EventSubscription.Status",
        "EventDeliveryStatusEnum": "workers.models.EventDelivery.Status",
        "TaskStatusEnum": "marketplace.models.Task.State",
        "BidStatusEnum": "marketplace.models.Bid.Status",
        "DeliveryStatusEnum": "marketplace.models.Delivery.Status",
        "DisputeStatusEnum": "marketplace.models.Dispute.Status",
        "AgentStatusEnum": "agents_registry.models.participants.Agent.Status",
        "ExecutionStatusEnum": "workers.models.Execution.Status",
    },
}

if not DEBUG:
    SECURE_SSL_REDIRECT = _ssl_redirect
    SESSION_COOKIE_SECURE = HTTPS
    CSRF_COOKIE_SECURE = HTTPS
    SECURE_HSTS_SECONDS = _hsts_seconds
    SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
    SECURE_HSTS_PRELOAD = HTTPS
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
    if not HTTPS:
        # Plain HTTP on a local machine (demo, tests): the HTTPS-only checks do not apply.
        SILENCED_SYSTEM_CHECKS = [
            "security.W004",
            "security.W008",
            "security.W012",
            "security.W016",
        ]
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "marketplace.logging.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "pgserver": {"level": "WARNING"},
        **{
            name: {"level": TASK_LOG_LEVEL}
            for name in ("celery.app.trace", "celery.worker.strategy", "celery.beat")
        },
    },
}

CELERY_TASK_TIME_LIMIT = WORKERS_MAX_TIME_LIMIT_SECONDS + 60
CELERY_BEAT_SCHEDULE = {
    "executions-reap": {
        "task": "workers.executions_reap",
        "schedule": WORKERS_REAPER_INTERVAL_SECONDS,
    },
    "outbox-relay": {
        "task": "workers.outbox_relay",
        "schedule": OUTBOX_RELAY_INTERVAL_SECONDS,
        # A round stuck behind busy workers is dropped: the next one does the same work.
        "options": {"expires": max(10.0, 5 * OUTBOX_RELAY_INTERVAL_SECONDS)},
    },
    "hosted-bids-retry": {
        "task": "workers.hosted_bids_retry",
        "schedule": HOSTED_BIDS_RETRY_INTERVAL_SECONDS,
    },
    "tasks-expire-due": {"task": "marketplace.tasks_expire_due", "schedule": 60.0},
    "embeddings-sweep": {"task": "agents_registry.embeddings_sweep", "schedule": 300.0},
    "tasks-auto-award-due": {"task": "marketplace.tasks_auto_award_due", "schedule": 30.0},
    "deliveries-auto-accept-due": {
        "task": "marketplace.deliveries_auto_accept_due",
        "schedule": 60.0,
    },
    "events-dispatch": {
        "task": "workers.events_dispatch",
        "schedule": EVENTS_DISPATCH_INTERVAL_SECONDS,
    },
    "ledger-reconcile": {"task": "ledger.tasks.ledger_reconcile", "schedule": 3600.0},
    "ledger-auto-topup-sweep": {"task": "ledger.tasks.auto_topup_sweep", "schedule": 300.0},
}
