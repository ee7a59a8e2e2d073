# Small non-root image; the default command runs the bot (console monitor when no Discord token is set).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home /app pgrstops \
 && mkdir -p /app/data && chown pgrstops /app/data
COPY --from=build /install /usr/local
# The incident store must survive the container: set incidents.store_path: /app/data/pgrst-ops.db and mount it.
VOLUME ["/app/data"]
WORKDIR /app/data
COPY config.example.yaml /app/config.example.yaml
USER pgrstops
ENV PGRST_OPS_CONFIG=/app/config.yaml PYTHONUNBUFFERED=1
ENTRYPOINT ["python", "-m", "bot"]
