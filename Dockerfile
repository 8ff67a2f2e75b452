# tead in a container; how to run it: README, "Signals and operations".
FROM python:3.11.14-slim-bookworm

# tini is PID 1: it passes SIGTERM on to tead and reaps the worker processes tead forks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends "tini=0.19.0-1*" \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /var/lib/tead tead

WORKDIR /opt/tead
COPY pyproject.toml README.md constraints.txt ./
COPY tead ./tead
RUN pip install --no-cache-dir -c constraints.txt .

USER 10001:10001
WORKDIR /var/lib/tead
VOLUME ["/var/lib/tead"]
# Listening beyond loopback needs a token: docker run -e TEAD_TOKEN=...
# Docker waits 10 s after SIGTERM before it kills: the drain (shutdown_grace) fits in it.
# For a longer grace, raise both: --stop-timeout 70 -e TEAD_SHUTDOWN_GRACE=60s.
ENV TEAD_LISTEN=0.0.0.0:8421 \
    TEAD_SHUTDOWN_GRACE=8s
EXPOSE 8421
STOPSIGNAL SIGTERM
# Asks the daemon where the client commands would: follows TEAD_LISTEN / TEAD_CONFIG.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["tead", "healthcheck"]
ENTRYPOINT ["tini", "--"]
CMD ["tead", "serve"]
