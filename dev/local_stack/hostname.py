"""A hostname callable for Airflow that tells apart components running on the same machine."""

from __future__ import annotations

import os
import socket


def component_hostname() -> str:
    """Return AIRFLOW_COMPONENT_HOSTNAME when set (one per local Celery worker), else the machine's FQDN."""
    return os.environ.get("AIRFLOW_COMPONENT_HOSTNAME") or socket.getfqdn()
