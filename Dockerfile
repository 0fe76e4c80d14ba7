# provml service image: the HTTP API (ingest, lineage, SPARQL, export, web UI).
# Untested here: the machine this was written on runs no Docker engine (docs/deployment.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY provml ./provml
COPY capture ./capture
COPY api ./api
COPY ontology ./ontology
COPY migrations ./migrations
RUN pip install ".[server]" && useradd --create-home provml && mkdir -p /data && chown provml /data
USER provml
WORKDIR /data

# PROVML_STORE names the store (a directory for the embedded default, or PostgreSQL);
# PROVML_RDF the Oxigraph directory. Both are set by docker-compose.yml.
ENV PROVML_STORE=/data/store
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"
CMD ["sh", "-c", "provml db upgrade && exec provml serve --host 0.0.0.0 --port 8000 --workers ${PROVML_WORKERS:-2}"]
