"""The outbox: capturing home changes (capture), deciding when to send (scheduler) and what (batches)."""
