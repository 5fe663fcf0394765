# The ingest job image: one image, one Cloud Run job per job family (terraform/jobs.tf).
# The launcher runs it as `python -m jobs run --run-id ... --org ... --pipeline ...`.
# (Cloud Functions are not built from this image: they build from the source archive made by
# terraform/scripts/package_functions.py.)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first (the layer is reused while the lock is unchanged): exactly the versions and
# files CI tested, the runtime dependencies plus the `gcp` extra (`make lock` refreshes it).
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

# The code reads its data files (providers.yml, procedures/, schemas/, ...) relative to the source
# tree, so the package is installed editable from /app rather than copied into site-packages.
COPY cli ./cli
COPY functions ./functions
COPY jobs ./jobs
COPY shared ./shared
COPY stubs ./stubs
COPY procedures ./procedures
COPY schemas ./schemas
COPY data/service_category_map ./data/service_category_map
COPY providers.yml genai_pricing.yml ./
COPY pyproject.toml README.md ./
RUN pip install --no-deps -e .

RUN useradd --system --uid 10001 --home-dir /app cloudact
USER cloudact

# A job runs to completion and exits; there is no server to probe.
HEALTHCHECK NONE

ENTRYPOINT ["python", "-m", "jobs"]
