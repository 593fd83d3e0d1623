-- One PostgreSQL for the stack: Airflow's metadata and MLflow's tracking/registry store.
CREATE DATABASE airflow;
CREATE DATABASE mlflow;
