"""The console's routes, one module per resource; each router depends on an auth dependency."""
