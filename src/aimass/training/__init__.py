"""The training center: launchers (local processes, Kubernetes pods) and tuning."""
