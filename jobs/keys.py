"""Every Redis key and channel marketdesk uses, in one place (arq's own keys are arq's)."""

EVENT_STREAM = "marketdesk:events"
CANCEL_CHANNEL = "marketdesk:cancel"
WORKER_KEY_PREFIX = "marketdesk:worker:"
ARQ_FUNCTION = "run_job"
PERIODIC_KEY_PREFIX = "marketdesk:periodic:"
