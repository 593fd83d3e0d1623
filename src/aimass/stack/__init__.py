"""The supervisor of the embedded services (Airflow, MLflow, the model server)."""
