"""The data center: dataset specs, the landing zone, the lake, quality and drift."""
