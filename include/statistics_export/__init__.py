"""Business logic of the daily product statistics export: plain functions, no Airflow."""
