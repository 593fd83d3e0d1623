"""Platform: settings, storage, processes, tracking, alerts, the Airflow API client, errors."""
