"""The AI Mass console: the service-management view inside the Airflow UI."""
