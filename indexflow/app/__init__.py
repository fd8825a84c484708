"""The application floor: what a person or another program starts (the `indexflow` command line,
the IIB-compatible HTTP service). It sits above flows/ and blocks/ because it starts flows and reads
blocks; nothing else under `indexflow/` imports it (../shared/ARCHITECTURE.md "Entry points")."""
