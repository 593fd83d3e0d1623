"""The functions the DAGs' tasks call, one module per DAG; they compose the centers."""
