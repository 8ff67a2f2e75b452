FROM python:3.11-slim
RUN useradd --system --create-home --home-dir /var/lib/tead tead
WORKDIR /opt/tead
COPY pyproject.toml README.md ./
COPY tead ./tead
RUN pip install --no-cache-dir .
USER tead
WORKDIR /var/lib/tead
VOLUME ["/var/lib/tead"]
ENV TEAD_LISTEN=0.0.0.0:8421
EXPOSE 8421
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8421/healthz').status != 200)"
# Listening beyond loopback needs a token: docker run -e TEAD_TOKEN=... -v $PWD:/var/lib/tead
CMD ["tead", "serve"]
