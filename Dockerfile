# The project's Airflow image: the official image, the runtime requirements, and dags/, plugins/, include/.
#
#   docker compose build                                  # both targets, as docker-compose.yaml uses them
#   docker build --target airflow -t statistics-export .  # the image a deployment runs
#
# The -python3.11 variant because constraints.txt was resolved on Python 3.11 (the image's default
# Python may differ); the Airflow version must equal the apache-airflow pin in requirements.txt.
FROM apache/airflow:3.3.2-python3.11 AS airflow

# The official image's build docs: install extra requirements as the airflow user, pinning apache-airflow
# to the image's own version so pip never up- or downgrades Airflow itself.
USER airflow
COPY --chown=airflow:0 requirements.txt constraints.txt /opt/airflow/requirements/
# Only the runtime part: everything above the "# Local stand-ins and tests" marker (moto, pgserver and
# pytest stay out of the image). The grep fails the build if the marker is ever renamed.
RUN cd /opt/airflow/requirements \
    && grep -qx '# Local stand-ins and tests' requirements.txt \
    && sed '/^# Local stand-ins and tests$/,$d' requirements.txt > requirements-runtime.txt \
    && pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" \
        -r requirements-runtime.txt -c constraints.txt

COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 include/ /opt/airflow/include/
# The DAG imports include.statistics_export... (from /opt/airflow) and export_hooks... (from plugins/);
# plugins/ is on the path for Airflow's own processes already, but not for a plain `python -m`.
ENV PYTHONPATH=/opt/airflow:/opt/airflow/plugins


# The local stand-ins built from the same code: the Shopify sandbox and the demo seeding need graphql-core.
FROM airflow AS local-standins
RUN cd /opt/airflow/requirements \
    && grep -E '^graphql-core==' requirements.txt > requirements-sandbox.txt \
    && pip install --no-cache-dir -r requirements-sandbox.txt -c constraints.txt \
    && mkdir -p /opt/airflow/sandbox-world
