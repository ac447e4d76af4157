# Tessera: slim Python, non-root. Runs `tessera serve`; `tessera worker` for a cluster (deploy/).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TESSERA_DATA_DIR=/data

WORKDIR /srv/tessera
COPY pyproject.toml README.md ./
COPY app ./app
COPY templates ./templates
COPY static ./static
RUN pip install -e '.[scale]' \
    && useradd --create-home --uid 10001 tessera \
    && mkdir -p /data && chown tessera /data

USER tessera
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
CMD ["tessera", "serve", "--host", "0.0.0.0", "--port", "8000"]
