"""What the processes count about themselves, below every package that counts: the
Prometheus series (`telemetry.metrics`). Exposing them at `/metrics` is the shell's job
(`bot.observability`)."""
