# Rehearsal stand-in for the S3 service (docker-compose.yml runs SeaweedFS, whose image cannot
# be pulled where no registry is reachable): moto's S3 server from PyPI on the local base image.
# An emulator: it keeps objects in memory and does not check credentials. It is enough to prove
# the wiring (bucket creation, MLflow artifacts written to S3 and read back), nothing more.
# Never used outside the rehearsal.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY build-extra/ /tmp/build-extra/
RUN python3 -m venv /opt/moto \
    && if [ -f /tmp/build-extra/ca.crt ]; then export PIP_CERT=/tmp/build-extra/ca.crt; fi \
    && /opt/moto/bin/pip install --no-cache-dir "moto[server]==5.2.5" \
    && rm -rf /tmp/build-extra
EXPOSE 8333
ENTRYPOINT ["/opt/moto/bin/moto_server", "-H", "0.0.0.0", "-p", "8333"]
