"""Pure merge logic (no Prefect, no I/O): OCP labels, bundle diff, parameters, naming/plan."""
