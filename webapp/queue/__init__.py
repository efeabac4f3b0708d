"""The queue you can see and steer: queued runs across the installation in the order workers
take them (priority, then age), per-project concurrency limits, why a run still waits, and the
workers that are up (their heartbeat, queues, device, slots and current runs)."""
