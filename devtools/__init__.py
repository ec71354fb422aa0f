"""Dev tooling, outside the product package: local launchers for Kafka, PostgreSQL,
Prometheus and a test CA, the services as child processes, and the demo data.

Not installed (pyproject's package discovery takes `services*` only), not in the Docker
image (.dockerignore), never imported by `services/`. `bin/run`, `bin/setup`, the tests and
the benchmarks use it from the checkout."""
