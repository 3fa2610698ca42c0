"""The Statistics exports page: routes (app), Airflow's REST API as the signed-in user (airflow_api),
inline SVG charts (charts) and the Jinja2 templates."""
