"""Callbacks to the support platforms: what becomes of the tickets they posted, signed
per the Standard Webhooks spec, from a durable outbox, with retries and a dead-letter
list."""
