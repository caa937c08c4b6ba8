# Two images from one file; `make images` builds both (docs/operations.md, "Build the images"):
#   runtime  every pipeline step: the Kubeflow components, the Trainer TrainJob, `mlic <step>`.
#            PyPI's Linux torch bundles CUDA 13 (the nvidia-* wheels), so the same image trains
#            on CPU nodes and on GPU nodes (NVIDIA driver >= 580).
#   serving  TorchServe (Java 17) with mlic installed, serving the packaged model from /mnt/models
#            (model-store/ + config/config.properties: the pipeline's package artifact, which is
#            also what KServe mounts there).
# Both install the exact versions of constraints.txt and run as the unprivileged user 10001.
# No `# syntax=` line: BuildKit's built-in frontend reads this file, so a build needs no registry
# (an offline machine builds FROM a base image made locally: deploy/base-image.sh).

# Any Debian bookworm image with Python 3.11 (python3, its venv module): the official slim image,
# a mirror of it in your registry, or the one deploy/base-image.sh makes with debootstrap.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DVC_NO_ANALYTICS=1 \
    GX_ANALYTICS_ENABLED=false \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# git: DVC clones data repositories (fetch step); tini: PID 1 that reaps TorchServe's workers.
# Versions come with the pinned base image's Debian release (security updates keep flowing).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 mlic \
    && useradd --uid 10001 --gid mlic --create-home --shell /usr/sbin/nologin mlic

FROM base AS builder
WORKDIR /opt/mlic
# Dependencies first, from the pin file only: this layer is rebuilt when the pins change, not
# when the code does. A stub package lets pip resolve mlic's own requirements; the remotes extra
# lets the pipeline's fetch task read DVC remotes on S3, GCS and Azure.
# TORCH_INDEX: a package index to take torch and torchvision from first, at the pinned versions
# (https://download.pytorch.org/whl/cpu: a CPU-only build, GBs smaller than PyPI's, whose Linux
# wheel bundles CUDA). The secret `pip-ca` is a CA bundle pip should trust (a TLS-inspecting
# proxy's), mounted for the pip commands only: it stays out of every layer.
# The README (the package's long description) is a blank stub here, so a docs edit does not
# reinstall 6 GB of dependencies.
ARG TORCH_INDEX=""
COPY constraints.txt pyproject.toml ./
RUN --mount=type=secret,id=pip-ca,required=false \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && python3 -m venv /opt/venv \
    && if [ -n "$TORCH_INDEX" ]; then \
        pip install --no-cache-dir --index-url "$TORCH_INDEX" -c constraints.txt torch torchvision; fi \
    && mkdir -p src/mlic \
    && touch src/mlic/__init__.py README.md \
    && pip install --no-cache-dir -c constraints.txt ".[remotes]" \
    && pip uninstall -y mlic
# The package carries the TorchServe handler (mlic/serving/handler.py): a plain install will do.
# build/ goes first: it holds the stub's modules, newer than the copied sources, and setuptools
# would keep them (an empty mlic/__init__.py in the image).
COPY README.md ./
COPY src/ src/
RUN --mount=type=secret,id=pip-ca,required=false \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && rm -rf build \
    && pip install --no-cache-dir --no-deps -c constraints.txt .

# Both images start from the same installed environment, so they share its 6 GB layer (on disk,
# in a registry, on a node) instead of carrying a copy each.
FROM base AS installed
COPY --from=builder /opt/venv /opt/venv

FROM installed AS runtime
# KFP's launcher stages artifacts under /gcs, /minio and /s3: writable by a non-root task.
RUN install -d -m 1777 /gcs /minio /s3
USER 10001:10001
WORKDIR /home/mlic
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["mlic", "--help"]

FROM installed AS serving
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*
USER 10001:10001
WORKDIR /home/mlic
EXPOSE 8080 8082
# Healthy = the model answers a real prediction (/ping says Healthy before the model can predict).
HEALTHCHECK --interval=30s --timeout=15s --start-period=60s --retries=3 \
    CMD ["python", "-m", "mlic.serving.probe"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["torchserve", "--start", "--foreground", "--ncs", "--ts-config", "/mnt/models/config/config.properties"]
