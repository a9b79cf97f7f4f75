#!/bin/sh
# Runs once, when the postgres volume is first initialised: the MLflow backend store and the
# Optuna storage get their own databases (each keeps its own Alembic version table, as does
# the study store in POSTGRES_DB).
set -eu
for db in "$POSTGRES_MLFLOW_DB" "$POSTGRES_OPTUNA_DB"; do
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
        -c "CREATE DATABASE \"$db\" OWNER \"$POSTGRES_USER\""
done
