# Tessera: slim Python, non-root, installed from its wheel (not editable). Runs `tessera serve`;
# `tessera worker` for a cluster (deploy/compose.yaml).
#
# Stage 1 builds wheels: the dependencies first (their own layer, rebuilt only when
# pyproject.toml changes), then Tessera's own wheel, which carries templates/ and static/.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
# The dependency list alone, read from pyproject.toml: this layer is cached across code changes.
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['scale']))" > requirements.txt \
    && pip wheel --wheel-dir /wheels -r requirements.txt
COPY app ./app
COPY templates ./templates
COPY static ./static
RUN pip wheel --no-deps --wheel-dir /wheels .

# Stage 2: only the installed wheels, no sources, no build tools.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TESSERA_DATA_DIR=/data
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links /wheels 'tessera-mosaic[scale]' \
    && rm -rf /wheels \
    && useradd --create-home --uid 10001 tessera \
    && mkdir -p /data && chown tessera /data
USER tessera
WORKDIR /home/tessera
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
CMD ["tessera", "serve", "--host", "0.0.0.0", "--port", "8000"]
