-- One PostgreSQL for the stack: Airflow's metadata, MLflow's tracking/registry store and
-- MLflow's users and permissions (the basic-auth app).
CREATE DATABASE airflow;
CREATE DATABASE mlflow;
CREATE DATABASE mlflow_auth;
