"""Django settings for mlopen, read from the environment (see .env.example for every variable).

With no environment at all, mlopen runs on SQLite and a broker made of folders, both under
MLOPEN_HOME (default ./.mlopen), so a fresh checkout needs no server of any kind.
"""

from __future__ import annotations

import ipaddress as _ipaddress
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url

from mlopen.config import (
    ConfigError,
    access_log_handler,
    access_log_level,
    broker_folder,
    email_settings,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
    mlopen_home,
    prepared_statement_options,
    s3_storage_options,
    storage_dir,
)
from mlopen_runner.preimport import DEFAULT_MODULES as DEFAULT_PREIMPORT_MODULES

BASE_DIR = Path(__file__).resolve().parent
MLOPEN_HOME = mlopen_home()
MLOPEN_STORAGE_DIR = storage_dir()
MLOPEN_ENV = env_str("MLOPEN_ENV", "development")
PRODUCTION = MLOPEN_ENV == "production"
if MLOPEN_ENV not in {"development", "production", "test"}:
    raise ConfigError(f"MLOPEN_ENV must be development, production or test, got {MLOPEN_ENV!r}")


def _secret_key() -> str:
    key = env_str("DJANGO_SECRET_KEY")
    key_file = env_str("DJANGO_SECRET_KEY_FILE")
    if key_file:
        key = Path(key_file).read_text().strip()
    if key:
        return key
    if PRODUCTION:
        raise ConfigError("MLOPEN_ENV=production needs DJANGO_SECRET_KEY or DJANGO_SECRET_KEY_FILE")
    # Development: a key generated once and kept beside the database, so sessions survive restarts.
    path = MLOPEN_HOME / "secret_key"
    if not path.exists():
        MLOPEN_HOME.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("MLOPEN_DEBUG", False) and not PRODUCTION
ALLOWED_HOSTS = env_list("MLOPEN_ALLOWED_HOSTS", [] if PRODUCTION else ["*"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ConfigError("MLOPEN_ENV=production needs MLOPEN_ALLOWED_HOSTS (comma-separated host names)")
CSRF_TRUSTED_ORIGINS = env_list("MLOPEN_CSRF_TRUSTED_ORIGINS", [])
# Where users reach mlopen (https://ml.example.org): absolute URLs in pages and API answers (the
# graph frame's script and CSP, image links) are built from it, never from the request's Host header.
# Unset: the first ALLOWED_HOSTS name (https in production), else http://localhost:<MLOPEN_PORT>.
_named_hosts = [host.lstrip(".") for host in ALLOWED_HOSTS if host != "*"]
MLOPEN_BASE_URL = (
    env_str("MLOPEN_BASE_URL").strip()
    or (
        f"{'https' if PRODUCTION else 'http'}://{_named_hosts[0]}"
        if _named_hosts
        else f"http://localhost:{env_int('MLOPEN_PORT', 8000)}"
    )
).rstrip("/")
if not MLOPEN_BASE_URL.startswith(("http://", "https://")):
    raise ConfigError(f"MLOPEN_BASE_URL must start with http:// or https://, got {MLOPEN_BASE_URL!r}")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "mlopen.core",
    "mlopen.pipelines",
    "mlopen.datasets",
    "mlopen.runs",
    "mlopen.notifications",
    "mlopen.web",
    "mlopen.api",
]

MIDDLEWARE = [
    # First: X-Forwarded-* count only from a configured proxy (mlopen.core.clients).
    "mlopen.core.clients.ForwardedHeadersMiddleware",
    # Second: the access log times everything after it (mlopen.core.access_log, MLOPEN_ACCESS_LOG).
    "mlopen.core.access_log.AccessLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "mlopen.core.uploads.UploadLimitMiddleware",
    "mlopen.core.uploads.UploadPathsMiddleware",  # before CsrfViewMiddleware, the first to parse a body
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "mlopen.core.access.NoStoreMiddleware",  # after WhiteNoise: static files stay cacheable
    # Closed by default: a page that does not declare itself public (mlopen.core.access) needs a
    # login. API views answer 401 themselves (DRF marks them login_required = False).
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",
    "mlopen.api.throttling.FailedTokenThrottleMiddleware",
    # Last, so it sees a view's exception first: a lost database answers 503, a full disk 507
    # (JSON for the API, a plain page otherwise); what fails in middleware goes to handler500.
    "mlopen.core.outages.OutageMiddleware",
]

ROOT_URLCONF = "mlopen.urls"
WSGI_APPLICATION = "mlopen.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Templates that replace another app's: the admin's base_site.html, drf-spectacular's docs pages.
        "DIRS": [BASE_DIR / "web" / "overrides"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
# The web server and several workers write at once: WAL lets readers and one writer proceed
# together, IMMEDIATE takes the write lock at BEGIN so two writers queue on the busy timeout
# instead of failing with "database is locked" in the middle of a transaction. temp_store=MEMORY:
# SQLite's statement journals and sorts stay in memory instead of a new file in /var/tmp each time
# (one per run's POST, measured): creating a file costs 0.2-0.8 ms of CPU on some hosts' ext4.
# journal_size_limit: the WAL file keeps the largest size it ever reached (results up to
# MLOPEN_RESULT_IN_DATABASE_KB are written through it, and a checkpoint cannot restart it while
# readers hold old snapshots); past 64 MB it is cut back to that after each checkpoint that restarts it.
SQLITE_OPTIONS = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 30,
    "init_command": (
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000; PRAGMA temp_store=MEMORY; "
        f"PRAGMA journal_size_limit={64 * 1024 * 1024};"
    ),
}
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
else:
    DATABASES = {"default": {"ENGINE": "mlopen.core.sqlite", "NAME": MLOPEN_HOME / "db.sqlite3"}}
# A kept connection is checked before a request reuses it: one cut between requests (a database
# restart, pg_terminate_backend) is replaced there, instead of failing that request.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # sqlite:// in DATABASE_URL
    DATABASES["default"]["ENGINE"] = "mlopen.core.sqlite"
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":  # postgres:// in DATABASE_URL
    # Django's, checking a kept connection by its socket instead of a SELECT 1 (see the module).
    DATABASES["default"]["ENGINE"] = "mlopen.core.postgresql"
if DATABASES["default"]["ENGINE"] == "mlopen.core.sqlite":
    # Kept between requests and tasks, as on PostgreSQL: opening one (with its PRAGMAs) cost ~1 ms
    # of every request and every run. WAL readers in autocommit hold no snapshot between statements.
    DATABASES["default"]["CONN_MAX_AGE"] = 60
    DATABASES["default"].setdefault("OPTIONS", {}).update(SQLITE_OPTIONS)
    # Tests use a file (not :memory:) so that real worker processes can see the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(MLOPEN_HOME / "test-db.sqlite3")}
DATABASES["default"].setdefault("OPTIONS", {}).update(
    prepared_statement_options(DATABASES["default"]["ENGINE"], env_bool("MLOPEN_DATABASE_PREPARED", True))
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "mlopen.core.auth.ThrottledLoginBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Failed logins are throttled per username and address: after AXES_FAILURE_LIMIT failures the
# pair is locked out for AXES_COOLOFF_TIME (django-axes keeps the attempts in the database).
AXES_FAILURE_LIMIT = env_int("MLOPEN_LOGIN_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("MLOPEN_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# The address a lockout is recorded under is the client's, behind the configured proxies only.
AXES_CLIENT_IP_CALLABLE = "mlopen.core.clients.client_address"
if MLOPEN_ENV == "test":
    # The real hasher costs ~0.5 s per password; tests create many users.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("MLOPEN_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static files and stored files -------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = MLOPEN_HOME / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every start when it is missing
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MLOPEN_STORAGE_DIR), "file_permissions_mode": 0o640},
    },
    # Hashed names, .gz and .br copies, cached for good (see mlopen.core.staticfiles).
    "staticfiles": {"BACKEND": "mlopen.core.staticfiles.StaticFilesStorage"},
}
# S3-compatible storage instead of the folder: MLOPEN_STORAGE_URL=s3://bucket/optional/prefix, with
# the usual AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or any other boto3 credential source),
# AWS_S3_ENDPOINT_URL for MinIO, Ceph and the like, and AWS_S3_REGION_NAME. Stored files are
# write-once, so each host keeps a copy of what it read in MLOPEN_STORAGE_CACHE_DIR (the runner
# needs real files) and never has to check it again (see mlopen.core.storage).
MLOPEN_STORAGE_URL = env_str("MLOPEN_STORAGE_URL").strip()
MLOPEN_STORAGE_CACHE_DIR = Path(env_str("MLOPEN_STORAGE_CACHE_DIR") or (MLOPEN_HOME / "storage-cache")).expanduser()
MLOPEN_STORAGE_CACHE_DIR = MLOPEN_STORAGE_CACHE_DIR.resolve()
if MLOPEN_STORAGE_URL:
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": s3_storage_options(MLOPEN_STORAGE_URL),
    }
# plotly.js is served from the copy inside the installed plotly package, so the page draws
# figures with exactly the plotly.js version the Python side produced them for.
try:
    import plotly as _plotly

    STATICFILES_DIRS = [("vendor/plotly", str(Path(_plotly.__file__).parent / "package_data"))]
except ImportError:  # pragma: no cover - plotly is a hard dependency
    STATICFILES_DIRS = []
# `mlopen serve` collects the static files into STATIC_ROOT under hashed names (served with a
# ten-year immutable cache); files it has not collected are served straight from the app folders
# under their plain names, with a short cache, so a checkout without `collectstatic` still works.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
# Only the hashed copies are kept (and compressed) in STATIC_ROOT; plain names come from the finders.
WHITENOISE_KEEP_ONLY_HASHED_FILES = True

# --- Uploads ------------------------------------------------------------------------------------
MLOPEN_MAX_UPLOAD_MB = env_int("MLOPEN_MAX_UPLOAD_MB", 1024)
# What each user's datasets may take in all, unless an admin set their own quota; 0 = no limit.
MLOPEN_USER_QUOTA_MB = env_int("MLOPEN_USER_QUOTA_MB", 10240)
# /healthz says "degraded" (503) when MLOPEN_HOME's disk has less free than this.
MLOPEN_MIN_FREE_DISK_MB = env_int("MLOPEN_MIN_FREE_DISK_MB", 1024)
if MLOPEN_MIN_FREE_DISK_MB < 0:
    raise ConfigError(f"MLOPEN_MIN_FREE_DISK_MB must be 0 or more, got {MLOPEN_MIN_FREE_DISK_MB}")
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024  # larger uploads stream to a temporary file
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024  # non-file form/JSON bodies
DATA_UPLOAD_MAX_NUMBER_FILES = env_int("MLOPEN_MAX_UPLOAD_FILES", 50)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000
FILE_UPLOAD_HANDLERS = [
    "mlopen.core.uploads.LimitedUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
FILE_UPLOAD_PERMISSIONS = 0o640

# --- Execution limits ----------------------------------------------------------------------------
MLOPEN_RUN_TIMEOUT = env_int("MLOPEN_RUN_TIMEOUT", 3600)
MLOPEN_RUN_MEMORY_MB = env_int("MLOPEN_RUN_MEMORY_MB", 4096)
# One disk budget per run for its folder and its /tmp (both on disk, gone when the run ends).
MLOPEN_RUN_DISK_MB = env_int("MLOPEN_RUN_DISK_MB", 2048)
# Processes and threads one sandboxed run may have at once (a fork bomb stops there).
MLOPEN_RUN_MAX_PROCESSES = env_int("MLOPEN_RUN_MAX_PROCESSES", 256)
MLOPEN_PARAMS_TIMEOUT = env_int("MLOPEN_PARAMS_TIMEOUT", 60)
MLOPEN_MAX_LOG_KB = env_int("MLOPEN_MAX_LOG_KB", 2048)
MLOPEN_MAX_RESULT_MB = env_int("MLOPEN_MAX_RESULT_MB", 100)
# A result up to this size (its table as Parquet and the rest as JSON, no images) is kept in the
# database with the run's outcome instead of as files in storage; 0 keeps every result in files.
MLOPEN_RESULT_IN_DATABASE_KB = env_int("MLOPEN_RESULT_IN_DATABASE_KB", 64)
# The text part of a result is cut to this (run pages and the run API carry it whole).
MLOPEN_MAX_TEXT_KB = env_int("MLOPEN_MAX_TEXT_KB", 1024)
# Images in a result (matplotlib figures, PIL images, image bytes and files): the size of each and
# how many are kept; the others are dropped with a warning in the result, never the run.
MLOPEN_MAX_IMAGE_MB = env_int("MLOPEN_MAX_IMAGE_MB", 10)
MLOPEN_MAX_IMAGES = env_int("MLOPEN_MAX_IMAGES", 50)
# Metric points kept per run (io.log_metric); the run page and API send them all.
MLOPEN_MAX_METRIC_POINTS = env_int("MLOPEN_MAX_METRIC_POINTS", 10000)
MLOPEN_HEARTBEAT_INTERVAL = env_float("MLOPEN_HEARTBEAT_INTERVAL", 5.0)
MLOPEN_HEARTBEAT_TIMEOUT = env_float("MLOPEN_HEARTBEAT_TIMEOUT", 45.0)
# A queued run whose message was sent this long ago is sent again (the broker may have lost it), on
# age alone, with the wait doubling at each re-send so a long backlog gets few duplicates; an
# environment build when a live worker of its queue has been idle this long too (see
# mlopen.runs.sweep.requeue_lost_messages). 0 turns re-sending off.
MLOPEN_REQUEUE_SECONDS = env_float("MLOPEN_REQUEUE_SECONDS", 120.0)
# On SIGTERM a worker takes no new run and gives the one in progress this long to finish; then it
# stops it, recorded as stopped by the shutdown with its log kept (`mlopen serve` waits for that).
MLOPEN_SHUTDOWN_GRACE_SECONDS = env_float("MLOPEN_SHUTDOWN_GRACE_SECONDS", 60.0)
MLOPEN_WORK_DIR = Path(env_str("MLOPEN_WORK_DIR") or (MLOPEN_HOME / "work")).resolve()
# Pipeline environments install wheels only: a source distribution runs its build code. true lets
# builds compile them (inside the build sandbox, which sees only the new environment).
MLOPEN_BUILD_FROM_SOURCE = env_bool("MLOPEN_BUILD_FROM_SOURCE", False)
MLOPEN_WORKER_NAME = env_str("MLOPEN_WORKER_NAME")
# Pipelines run on a named runtime (a locked package set built by uv, see mlopen.pipelines.runtimes):
# new pipeline versions get this one unless their upload names another. The runtimes shipped with
# mlopen live in src/mlopen/runtimes/<name>/; MLOPEN_RUNTIMES_DIR adds an admin's own, same layout.
MLOPEN_DEFAULT_RUNTIME = env_str("MLOPEN_DEFAULT_RUNTIME", "datascience")
# uv's download cache for runtime and environment builds; empty: MLOPEN_HOME/envs/uv-cache. Hosts or
# installs may share one (uv locks it), so a second MLOPEN_HOME builds a runtime without downloading.
MLOPEN_UV_CACHE_DIR = Path(env_str("MLOPEN_UV_CACHE_DIR")).resolve() if env_str("MLOPEN_UV_CACHE_DIR") else None
MLOPEN_RUNTIMES_DIR = Path(env_str("MLOPEN_RUNTIMES_DIR")).resolve() if env_str("MLOPEN_RUNTIMES_DIR") else None
MLOPEN_DEFAULT_QUEUE = env_str("MLOPEN_DEFAULT_QUEUE", "mlopen")
MLOPEN_RESULT_PAGE_SIZE = env_int("MLOPEN_RESULT_PAGE_SIZE", 50)
# Fair use of the workers: how many runs one user may have running and waiting at once (an admin
# may set a user's own, "Run limits"); 0 = no limit. A run past the queued limit is refused (429).
MLOPEN_USER_MAX_RUNNING = env_int("MLOPEN_USER_MAX_RUNNING", 4)
MLOPEN_USER_MAX_QUEUED = env_int("MLOPEN_USER_MAX_QUEUED", 100)
if MLOPEN_USER_MAX_RUNNING < 0 or MLOPEN_USER_MAX_QUEUED < 0:
    raise ConfigError("MLOPEN_USER_MAX_RUNNING and MLOPEN_USER_MAX_QUEUED must be 0 (no limit) or more")
# Requests that wait for a run to finish (the API's "wait"): each holds a web server thread, so a
# web process lets this many wait at once (it runs MLOPEN_WEB_THREADS) and caps how long one waits.
MLOPEN_MAX_WAITING_REQUESTS = env_int("MLOPEN_MAX_WAITING_REQUESTS", 6)
MLOPEN_MAX_WAIT_SECONDS = env_float("MLOPEN_MAX_WAIT_SECONDS", 60.0)
MLOPEN_LOAD_DEMO = env_bool("MLOPEN_LOAD_DEMO", True)
# Webhooks may call loopback, link-local, private and reserved addresses (a receiver on this host
# or its network): off, so a user cannot make the server probe what only it can reach.
MLOPEN_WEBHOOK_ALLOW_PRIVATE = env_bool("MLOPEN_WEBHOOK_ALLOW_PRIVATE", False)
# Warm runs: a worker keeps up to MLOPEN_WARM_MAX child processes with a pipeline version and its
# model loaded, so a run skips starting Python, the imports and unpickling the model.
MLOPEN_WARM_RUNS = env_bool("MLOPEN_WARM_RUNS", True)
MLOPEN_WARM_MAX = env_int("MLOPEN_WARM_MAX", 2)
MLOPEN_WARM_IDLE_SECONDS = env_float("MLOPEN_WARM_IDLE_SECONDS", 300.0)
# Blank processes (mlopen_runner.preimport): per runtime, this many sandboxed processes per worker
# that already imported these modules, taken by a run with no warm process (0: none). Names the
# runtime lacks are skipped; dotted names import submodules.
MLOPEN_PREIMPORT_POOL = env_int("MLOPEN_PREIMPORT_POOL", 1)
MLOPEN_PREIMPORT_MODULES = env_list("MLOPEN_PREIMPORT_MODULES", list(DEFAULT_PREIMPORT_MODULES))
# Where pipeline code runs (mlopen_runner.sandbox): "bubblewrap" (a worker that cannot create the
# sandbox refuses to start), "auto" (bubblewrap where it works, a plain process elsewhere, saying
# so on every page) or "none" (never sandboxed: trusted authors only). Production fails closed.
MLOPEN_SANDBOX = env_str("MLOPEN_SANDBOX").strip() or ("bubblewrap" if PRODUCTION else "auto")
if MLOPEN_SANDBOX not in {"auto", "bubblewrap", "none"}:
    raise ConfigError(f"MLOPEN_SANDBOX must be auto, bubblewrap or none, got {MLOPEN_SANDBOX!r}")

# --- E-mail (run notifications) -----------------------------------------------------------------
# EMAIL_URL in dj-email-url's form: smtp://user:password@host:587/?tls=True (?ssl=True for SSL),
# file:///folder (one file per message), console: (printed by the worker: the default, so a fresh
# checkout sends nothing anywhere) or dummy:. MLOPEN_EMAIL_FROM is the sender of every message.
EMAIL_URL = env_str("EMAIL_URL", "console:")
_email = email_settings(EMAIL_URL, MLOPEN_HOME / "mail")
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email["EMAIL_HOST"]
EMAIL_PORT = _email["EMAIL_PORT"]
EMAIL_HOST_USER = _email["EMAIL_HOST_USER"]
EMAIL_HOST_PASSWORD = _email["EMAIL_HOST_PASSWORD"]
EMAIL_USE_TLS = _email["EMAIL_USE_TLS"]
EMAIL_USE_SSL = _email["EMAIL_USE_SSL"]
EMAIL_FILE_PATH = _email["EMAIL_FILE_PATH"]
EMAIL_TIMEOUT = env_int("MLOPEN_EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("MLOPEN_EMAIL_FROM", "mlopen <mlopen@localhost>")

# --- Retention -----------------------------------------------------------------------------------
# Finished runs older than this many days are deleted with their results and logs (a pipeline may
# set its own; runs tagged keep, and runs and models still in use, stay). 0: kept forever.
MLOPEN_RETENTION_DAYS = env_int("MLOPEN_RETENTION_DAYS", 0)
if MLOPEN_RETENTION_DAYS < 0:
    raise ConfigError(f"MLOPEN_RETENTION_DAYS must be 0 (off) or more, got {MLOPEN_RETENTION_DAYS}")
# How often `mlopen serve`'s scheduler (celery beat) asks a worker to prune.
MLOPEN_PRUNE_INTERVAL_HOURS = env_float("MLOPEN_PRUNE_INTERVAL_HOURS", 6.0)
# --- The web server `mlopen serve` runs (waitress, mlopen.cli.web) ------------------------------
# waitress reads each request whole (headers and body, a large body into a temporary file) in its
# I/O loop before one of its threads runs Django: a slow or stalled client holds a socket, never a
# thread. A connection that sends nothing for MLOPEN_WEB_CLIENT_TIMEOUT seconds is closed.
MLOPEN_WEB_THREADS = env_int("MLOPEN_WEB_THREADS", 16)
MLOPEN_WEB_CLIENT_TIMEOUT = env_int("MLOPEN_WEB_CLIENT_TIMEOUT", 60)
MLOPEN_WEB_MAX_CONNECTIONS = env_int("MLOPEN_WEB_MAX_CONNECTIONS", 1000)
if min(MLOPEN_WEB_THREADS, MLOPEN_WEB_CLIENT_TIMEOUT, MLOPEN_WEB_MAX_CONNECTIONS) < 1:
    raise ConfigError("MLOPEN_WEB_THREADS, MLOPEN_WEB_CLIENT_TIMEOUT and MLOPEN_WEB_MAX_CONNECTIONS must be 1 or more")

# --- Celery: the queue is an engine, run state lives in our own Run rows -------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
# The folder broker's folder (None with Redis or RabbitMQ); filesystem:///path names it.
MLOPEN_BROKER_DIR = broker_folder(CELERY_BROKER_URL) if CELERY_BROKER_URL.startswith("filesystem://") else None
_broker_dir = MLOPEN_BROKER_DIR
if _broker_dir is not None:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "control_folder": str(_broker_dir / "control"),
        # Processed messages are moved (an atomic rename on the same filesystem) rather than into
        # /tmp, where a cross-device copy would let two workers read the same message.
        "store_processed": True,
        "processed_folder": str(_broker_dir / "processed"),
        # The folder broker polls; 0.1 s keeps a submitted run's start latency low at a cost of
        # a few directory listings per second per worker.
        "polling_interval": env_float("MLOPEN_BROKER_POLL_SECONDS", 0.1),
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://", "redis+socket://", "sentinel://")):
    # A Redis consumer waits in BRPOP for up to this long, and a stopping worker waits for that
    # BRPOP to return before it closes the connection: with kombu's 1 s an idle worker took 1.4-1.6 s
    # to stop here, with 0.25 s 0.7-0.9 s. A message ends the wait at once either way; an idle
    # worker asks 4 times a second instead of once.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"polling_interval": 0.25}
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {}
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = MLOPEN_DEFAULT_QUEUE
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Celery's Django fix-up would close the database connection before and after every task: a new
# PostgreSQL connection (~10 ms) per run. mlopen.runs.signals applies Django's own rules instead
# (CONN_MAX_AGE, health checks), as for a web request; this only keeps the fix-up out of the way.
CELERY_DB_REUSE_MAX = 1_000_000

# celery beat (started by `mlopen serve`) sends the periodic prune; its schedule file lives in MLOPEN_HOME.
CELERY_BEAT_SCHEDULE = {
    "mlopen-prune": {
        "task": "mlopen.prune",
        "schedule": timedelta(hours=MLOPEN_PRUNE_INTERVAL_HOURS),
        "options": {"queue": MLOPEN_DEFAULT_QUEUE, "expires": MLOPEN_PRUNE_INTERVAL_HOURS * 3600},
    }
}
CELERY_BEAT_SCHEDULE_FILENAME = str(MLOPEN_HOME / "celerybeat-schedule")

# --- REST API -----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "mlopen.api.authentication.HashedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "mlopen.api.pagination.StandardPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "mlopen.api.errors.exception_handler",
    # Rates: MLOPEN_THROTTLE_RATES below (mlopen.api.throttling reads them on every request).
    "DEFAULT_THROTTLE_CLASSES": [
        "mlopen.api.throttling.ReadThrottle",
        "mlopen.api.throttling.WriteThrottle",
        "mlopen.api.throttling.SubmitThrottle",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    # DRF's three, with a JSON parser that answers 400 to a body nested too deeply to walk.
    "DEFAULT_PARSER_CLASSES": [
        "mlopen.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "mlopen.api.parsers.MultiPartParser",
    ],
}
# API rate limits ("N/second", "N/minute", "N/hour" or "N/day"; empty turns one off): per user, or per
# client address without a login; run submissions count on top of writes. A request past a limit
# gets 429 with Retry-After. Failed token authentications are capped per client address.
MLOPEN_THROTTLE_RATES = {
    "user_read": env_str("MLOPEN_THROTTLE_USER_READ", "1200/minute"),
    "anon_read": env_str("MLOPEN_THROTTLE_ANON_READ", "120/minute"),
    "user_write": env_str("MLOPEN_THROTTLE_USER_WRITE", "300/minute"),
    "anon_write": env_str("MLOPEN_THROTTLE_ANON_WRITE", "30/minute"),
    "user_submit": env_str("MLOPEN_THROTTLE_USER_SUBMIT", "60/minute"),
    "failed_auth": env_str("MLOPEN_THROTTLE_FAILED_AUTH", "30/minute"),
}
for _scope, _rate in MLOPEN_THROTTLE_RATES.items():
    _count, _, _period = _rate.partition("/")
    if _rate and not (_count.isascii() and _count.isdigit() and _period[:1] in ("s", "m", "h", "d")):
        raise ConfigError(f"MLOPEN_THROTTLE_{_scope.upper()} must look like 60/minute, got {_rate!r}")
# The throttles' counts: in each process's memory by default (`mlopen serve` runs one web process);
# MLOPEN_CACHE_URL=redis://host:6379/1 shares them between web processes and hosts.
MLOPEN_CACHE_URL = env_str("MLOPEN_CACHE_URL").strip()
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": MLOPEN_CACHE_URL}
        if MLOPEN_CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "mlopen"}
    )
}
SPECTACULAR_SETTINGS = {
    "TITLE": "mlopen API",
    "DESCRIPTION": "Upload pipelines and datasets, train and run pipelines, read their results.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its documentation pages are public on purpose: they describe, they hold no data.
    "SERVE_PERMISSIONS": ["mlopen.api.permissions.Public"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Tags and operation ids from the path after /api/v1/ (pipelines, datasets, runs, me).
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # Several models have a "kind"; name each choice set after its owner rather than by a hash.
    "ENUM_NAME_OVERRIDES": {
        "RunKindEnum": "mlopen.runs.models.Run.Kind",
        "DatasetKindEnum": "mlopen.datasets.models.Dataset.Kind",
        "PreviewKindEnum": ["table", "text", "none"],
        "TokenStateEnum": ["active", "revoked", "expired"],
        # e-mail and browser notifications take the same three choices: one enum, not two names.
        "NotificationChoiceEnum": ["off", "all", "failures"],
    },
}

# --- Security ---
# Content-Security-Policy (django-csp). Our templates carry no inline script: htmx, plotly.js and
# our own code come from /static/. Graphs that pipelines return as HTML are shown from a
# separate sandboxed URL with its own policy (see mlopen.web.views.graph_frame).
from csp.constants import NONE, SELF  # noqa: E402

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        # plotly.js injects <style> elements and style attributes while it draws.
        "style-src": [SELF, "'unsafe-inline'"],
        "img-src": [SELF, "data:", "blob:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "frame-src": [SELF],
        "frame-ancestors": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
    }
}
# --- Security (cont.) -------------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
# Proxies in front (see mlopen.core.clients): how many, and optionally their addresses. Only then
# are X-Forwarded-For/-Proto/-Host believed, and only from such a peer when addresses are named.
MLOPEN_PROXY_COUNT = env_int("MLOPEN_PROXY_COUNT", 0)
MLOPEN_TRUSTED_PROXIES = env_list("MLOPEN_TRUSTED_PROXIES", [])
if MLOPEN_PROXY_COUNT < 0:
    raise ConfigError(f"MLOPEN_PROXY_COUNT must be 0 or more, got {MLOPEN_PROXY_COUNT}")
for _proxy in MLOPEN_TRUSTED_PROXIES:
    try:
        _ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ConfigError(f"MLOPEN_TRUSTED_PROXIES: {_proxy!r} is not an IP address or network") from None
if MLOPEN_PROXY_COUNT or MLOPEN_TRUSTED_PROXIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = env_bool("MLOPEN_USE_X_FORWARDED_HOST", True)
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# Pages are never framed, except the sandboxed graph frames (xframe_options_sameorigin on that view).
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("MLOPEN_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("MLOPEN_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

# The web server's access log (mlopen.core.access_log): "-" the console (what `mlopen serve` prints),
# a file path (reopened when logrotate moves it), or "off".
MLOPEN_ACCESS_LOG = env_str("MLOPEN_ACCESS_LOG", "-").strip() or "-"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "access": {"format": "%(asctime)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        "access": access_log_handler(MLOPEN_ACCESS_LOG),
    },
    "root": {"handlers": ["console"], "level": env_str("MLOPEN_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "mlopen.access": {
            "handlers": ["access"],
            "level": access_log_level(MLOPEN_ACCESS_LOG),
            "propagate": False,
        },
    },
}
