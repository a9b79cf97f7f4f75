# Rehearsal stand-in for the official postgres image (no image registry is reachable on the
# machines where `make rehearse-compose` was written): Debian's PostgreSQL 15 on the local base
# image, with an entrypoint that honours the same contract as far as docker-compose.yml uses
# it (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, /docker-entrypoint-initdb.d/*.sh on the
# first start, data in /var/lib/postgresql/data). Never used outside the rehearsal.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /docker-entrypoint-initdb.d /run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /run/postgresql
COPY rehearsal/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
USER postgres
ENTRYPOINT ["postgres-entrypoint"]
