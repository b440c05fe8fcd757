"""marketdesk's core: settings, store, queue, worker, events, and one subpackage per domain.

Nothing here imports ``web``; the web process imports this package.
"""
