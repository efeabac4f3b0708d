"""Settings shared by every mode. Values come from the environment (see README: Configuration).

Embedded mode (the default) needs no server: SQLite under var/ and kombu's filesystem broker.
Full mode: DATABASE_URL=postgres://... and CELERY_BROKER_URL=redis://...
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from webapp.config.env import env_bool, env_devices, env_int, env_list, env_networks, env_str

BASE_DIR = Path(__file__).resolve().parents[3]
VAR_DIR = Path(env_str("RLAB_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env_str("SECRET_KEY", "rlab-insecure-development-key-change-me")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "csp",
    "axes",
    "template_partials",
    "ninja",
    "webapp.teams",
    "webapp.projects",
    "webapp.experiments",
    "webapp.datasets",
    "webapp.runs",
    "webapp.live",
    "webapp.rollouts",
    "webapp.evaluations",
    "webapp.artifacts",
    "webapp.queue",
    "webapp.reviews",
    "webapp.groups",
    "webapp.sweeps",
    "webapp.jobs",
    "webapp.runs_table",
    "webapp.deletion",
    "webapp.api",
    "webapp.site",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Before the CSRF check: a script's unusable token is a 401 that says so.
    "webapp.config.middleware.UnusableTokenMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    # Before any view or query: a NUL in an address or a form is a 400, not a database error.
    # After the middleware above, which read only cookies, so that its page gets their headers.
    "webapp.config.middleware.MalformedInputMiddleware",
    # Last, as django-axes asks: it answers locked-out logins.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "webapp.config.urls"
ASGI_APPLICATION = "webapp.config.asgi.application"
WSGI_APPLICATION = "webapp.config.wsgi.application"

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
            ],
        },
    }
]

_database_url = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'rlab.sqlite3'}")
try:
    # A connection is closed at the end of each request (CONN_MAX_AGE 0), as Django asks of an
    # ASGI server: each request runs in a thread of its own, so a connection kept for the next
    # one outlived its thread until garbage collection, and 50 requests a second held about 100
    # idle connections, Postgres's default limit. Open run pages close theirs too
    # (webapp.live.live_feed.releasing_connection).
    DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=0)}
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL={_database_url!r} is not a database URL: {exc}")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker write at once; wait on the lock instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE",
                                       "init_command": "PRAGMA journal_mode=WAL;"}
# Postgres connections kept open for reuse, per process: opening one costs Postgres about as
# much CPU as the queries of an API request. The web server turns the pool on
# (webapp/config/asgi.py); a Celery worker forks, and a pool must not cross a fork, so workers
# and commands connect per use (0). A connection taken from the pool is checked first, so a
# restarted Postgres costs no failed request.
RLAB_DB_POOL_SIZE = env_int("RLAB_DB_POOL_SIZE", 0, minimum=0)
if RLAB_DB_POOL_SIZE and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1, "max_size": RLAB_DB_POOL_SIZE, "timeout": 10}
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True  # the pool checks what it hands out

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses logins while locked out
    "django.contrib.auth.backends.ModelBackend",
]
# Login rate limiting: a username is locked for a while after repeated failures from one address.
AXES_FAILURE_LIMIT = env_int("RLAB_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("RLAB_LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False
# The client address is the connection's (REMOTE_ADDR) only: anyone can send X-Forwarded-For, and
# the web server (webapp.config.web_server) already puts the real client there when a trusted
# proxy forwarded the request.
AXES_IPWARE_META_PRECEDENCE_ORDER = ["REMOTE_ADDR"]

# Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto the web server believes: IP addresses
# or networks, comma-separated. None by default: rlab is then reached directly.
RLAB_TRUSTED_PROXIES = env_networks("RLAB_TRUSTED_PROXIES")

# Content-Security-Policy: no inline script anywhere, nothing from other origins.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "projects:list"
LOGOUT_REDIRECT_URL = "login"

# Mail, for password reset links only, and only where a mail server is configured: without one,
# an administrator makes the link (`manage.py password_link USERNAME`).
EMAIL_HOST = env_str("EMAIL_HOST", "")
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "rlab@localhost")
RLAB_PASSWORD_RESET_BY_EMAIL = bool(EMAIL_HOST)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "webapp" / "static"]

# The process's own cache: group charts' bucketed series of ended runs (webapp.groups.aligned),
# one entry per run, metric and bucket width, and projects' disk use: room for many runs.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                      "OPTIONS": {"MAX_ENTRIES": 20_000}}}

# Celery: the broker carries run ids only; results live in the database, so no result backend.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "control_folder": str(_broker_dir / "control"),
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
    }
elif not CELERY_BROKER_URL.startswith(("redis://", "rediss://", "amqp://")):
    raise ImproperlyConfigured(
        f"CELERY_BROKER_URL={CELERY_BROKER_URL!r}: use redis://, amqp:// or filesystem://")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "cpu"
# Runs are routed per launch (cpu or gpu, see runs.services.run_queue_for). Housekeeping is no
# task: a thread in every worker's main process (worker.housekeeping), so no beat is needed.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Runs and the worker.
RLAB_RUN_QUEUE = env_str("RLAB_RUN_QUEUE", "cpu")
# The worker heartbeats, and notices a cancel, this often; cancel = this + the grace below.
RLAB_HEARTBEAT_SECONDS = env_int("RLAB_HEARTBEAT_SECONDS", 2, minimum=1)
# A running run whose worker has not heartbeated for this long is marked failed.
RLAB_STALE_AFTER_SECONDS = env_int("RLAB_STALE_AFTER_SECONDS", 120, minimum=10)
# A running tracked run that nothing was heard from for this long (the SDK heartbeats every
# 30 s; an MLflow client only writes) is marked crashed: its script was killed. Long enough
# for an MLflow script's slowest step between two writes, or a short network cut.
RLAB_TRACKED_STALE_AFTER_SECONDS = env_int("RLAB_TRACKED_STALE_AFTER_SECONDS", 600, minimum=60)
# Every worker's housekeeping (worker.housekeeping) runs this often: it fails stale runs, marks
# interrupted the runs a killed incarnation of the worker left, and sends queued runs again.
RLAB_HOUSEKEEPING_SECONDS = env_int("RLAB_HOUSEKEEPING_SECONDS", 30, minimum=1)
# A queued run the broker accepted this long ago, still unclaimed while its queue holds fewer
# messages than it has queued runs, lost its message (a Redis without persistence restarted):
# it is sent again. Sending one twice is harmless: a run is claimed once.
RLAB_REQUEUE_AFTER_SECONDS = env_int("RLAB_REQUEUE_AFTER_SECONDS", 300, minimum=10)
# An open run page's event stream checks this often that its user may still see the run.
RLAB_STREAM_ACCESS_CHECK_SECONDS = env_int("RLAB_STREAM_ACCESS_CHECK_SECONDS", 60, minimum=1)
# Seconds between SIGTERM and SIGKILL when a run is cancelled.
RLAB_CANCEL_GRACE_SECONDS = env_int("RLAB_CANCEL_GRACE_SECONDS", 5, minimum=0)
# What the workers page says a worker has (e.g. "cuda: 2 × A100"); empty: the GPUs nvidia-smi
# lists, or cpu where there is none.
RLAB_WORKER_DEVICE = env_str("RLAB_WORKER_DEVICE", "")
# The devices this worker gives runs (a run needing N waits for a worker with N free, and its
# processes see only theirs): a count ("2") or CUDA device ids ("0,1,2,3"); empty: the GPUs
# nvidia-smi lists (or CUDA_VISIBLE_DEVICES, where the worker is started with it), or one CPU
# slot where there is none. On CPU a device is a process slot. Checked here, resolved by the worker
# at its start (worker.devices).
RLAB_WORKER_DEVICES = env_devices("RLAB_WORKER_DEVICES")
# Script runs (job templates' commands) run only on workers started with this set: a template's
# command runs with the worker's rights.
RLAB_WORKER_SCRIPTS = env_bool("RLAB_WORKER_SCRIPTS", False)
# The address at which script runs' processes reach this web app (RLAB_URL and
# MLFLOW_TRACKING_URI in their environment).
RLAB_URL = env_str("RLAB_URL", "http://127.0.0.1:8000")
# A script run's output kept in its log: its first and last this-many bytes; what lies between
# is dropped, and the log says how much.
RLAB_SCRIPT_LOG_HEAD_BYTES = env_int("RLAB_SCRIPT_LOG_HEAD_BYTES", 1024 * 1024, minimum=1024)
RLAB_SCRIPT_LOG_TAIL_BYTES = env_int("RLAB_SCRIPT_LOG_TAIL_BYTES", 1024 * 1024, minimum=1024)
# Seconds between a script run's looks for new rollout files and checkpoint folders.
RLAB_SCRIPT_SCAN_SECONDS = env_int("RLAB_SCRIPT_SCAN_SECONDS", 5, minimum=1)
# The most runs one sweep may launch (its budget's ceiling).
RLAB_SWEEP_MAX_RUNS = env_int("RLAB_SWEEP_MAX_RUNS", 1000, minimum=1)
# Absolute: the training process runs in its run's folder.
RLAB_MODEL_CACHE = str(Path(env_str("RLAB_MODEL_CACHE", str(VAR_DIR / "models"))).absolute())
# Folders an administrator fills with models (Hugging Face folders or GGUF files, one or two
# levels down: name, or group/name). Members pick them as local:<name>; no other path on the
# workers can be named. The web app and the workers must see them at the same paths.
RLAB_MODEL_ROOTS = [Path(p) for p in env_list("RLAB_MODEL_ROOTS", [])]
if any(not root.is_absolute() for root in RLAB_MODEL_ROOTS):
    raise ImproperlyConfigured(f"RLAB_MODEL_ROOTS={','.join(map(str, RLAB_MODEL_ROOTS))!r}: "
                               f"give absolute folders, separated by commas.")
# What runs write (checkpoints): one folder per run, run-<id>-<created>, made by the worker. The
# run page checks these folders to tell which checkpoints are still on disk, so the web app must
# see this folder at the same path as the workers.
RLAB_RUN_DIR = Path(env_str("RLAB_RUN_DIR", str(VAR_DIR / "runs"))).absolute()

# Datasets: uploaded files and their normalised JSON lines, stored once each by sha256. Workers
# read the normalised files, so they must see this folder at the same path.
RLAB_DATASET_DIR = Path(env_str("RLAB_DATASET_DIR", str(VAR_DIR / "datasets"))).absolute()
# The largest dataset file accepted for upload, in bytes.
RLAB_DATASET_MAX_BYTES = env_int("RLAB_DATASET_MAX_BYTES", 50 * 1024 * 1024, minimum=1)
# The most rows an uploaded file may hold, and how much its data may take once decoded (text:
# its bytes; Parquet: its values in memory, which compression can make far more than the file).
# Both are checked as the file is read, so an upload past them is refused before it is read whole.
RLAB_DATASET_MAX_ROWS = env_int("RLAB_DATASET_MAX_ROWS", 1_000_000, minimum=1)
RLAB_DATASET_MAX_DECODED_BYTES = env_int("RLAB_DATASET_MAX_DECODED_BYTES",
                                         4 * RLAB_DATASET_MAX_BYTES, minimum=1)

# The artifact store (webapp.artifacts): files that tracked runs log and the models they log. A
# folder by default; an S3-compatible bucket when RLAB_ARTIFACT_BUCKET is set (credentials from
# the usual AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or the machine's role; RLAB_ARTIFACT_S3_
# ENDPOINT for MinIO, Ceph and the like).
RLAB_ARTIFACT_DIR = Path(env_str("RLAB_ARTIFACT_DIR", str(VAR_DIR / "artifacts"))).absolute()
RLAB_ARTIFACT_BUCKET = env_str("RLAB_ARTIFACT_BUCKET", "")
if RLAB_ARTIFACT_BUCKET:
    ARTIFACT_STORAGE = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {"bucket_name": RLAB_ARTIFACT_BUCKET,
                    "location": env_str("RLAB_ARTIFACT_PREFIX", ""),
                    "endpoint_url": env_str("RLAB_ARTIFACT_S3_ENDPOINT", "") or None,
                    "region_name": env_str("RLAB_ARTIFACT_S3_REGION", "") or None,
                    "file_overwrite": True, "default_acl": None, "querystring_auth": False},
    }
else:
    ARTIFACT_STORAGE = {"BACKEND": "django.core.files.storage.FileSystemStorage",
                        "OPTIONS": {"location": str(RLAB_ARTIFACT_DIR)}}
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "artifacts": ARTIFACT_STORAGE,
}
# The largest artifact file, and the most one run (or logged model) may store, in bytes.
RLAB_ARTIFACT_MAX_FILE_BYTES = env_int("RLAB_ARTIFACT_MAX_FILE_BYTES", 2 * 1024**3, minimum=1)
RLAB_ARTIFACT_MAX_RUN_BYTES = env_int("RLAB_ARTIFACT_MAX_RUN_BYTES", 20 * 1024**3, minimum=1)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
