# The production image: the official Airflow image, the runtime requirements, and dags/, plugins/, include/.
# Nothing else: the local stand-ins (dev/) have their own image, dev/Dockerfile, built on top of this one,
# and .dockerignore keeps dev/, tests/, bench/ and the development requirements out of this build context.
#
#   docker build -t statistics-export:3.3.2 .
#
# The -python3.11 variant because constraints.txt was resolved on Python 3.11 (the image's default
# Python may differ); the Airflow version must equal the apache-airflow pin in requirements.txt.
FROM apache/airflow:3.3.2-python3.11

# The official image's build docs: install extra requirements as the airflow user, pinning apache-airflow
# to the image's own version so pip never up- or downgrades Airflow itself. requirements.txt is the
# runtime set only (the development set is requirements-dev.txt, never installed here).
USER airflow
COPY --chown=airflow:0 requirements.txt constraints.txt /opt/airflow/requirements/
RUN cd /opt/airflow/requirements \
    && pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r requirements.txt -c constraints.txt

COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 include/ /opt/airflow/include/
# The DAG imports include.statistics_export... (from /opt/airflow) and export_hooks... (from plugins/);
# plugins/ is on the path for Airflow's own processes already, but not for a plain `python -m`.
ENV PYTHONPATH=/opt/airflow:/opt/airflow/plugins
# A packed unit masks its shops' tokens as one joined secret, which this adapter splits: one regex compile per
# unit in the task and in its supervisor, not one per token (plugins/export_hooks/masking.py).
ENV AIRFLOW__LOGGING__SECRET_MASK_ADAPTER=export_hooks.masking.split_secret_list
