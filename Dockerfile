# rerankdb's image for docker-compose.yml (migrate, and later the worker).
FROM python:3.11-slim
WORKDIR /app
# torch is large; pass e.g. --build-arg TORCH_PIP_ARGS="--index-url <your CPU wheel index>"
# to pick a CPU-only build.
ARG TORCH_PIP_ARGS=""
RUN pip install --no-cache-dir ${TORCH_PIP_ARGS} torch
COPY pyproject.toml README.md alembic.ini ./
COPY rerankdb ./rerankdb
COPY sql ./sql
COPY migrations ./migrations
RUN pip install --no-cache-dir .
ENTRYPOINT []
CMD ["rerankdb", "--help"]
