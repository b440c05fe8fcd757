"""marketdesk's web process: pages, HTML fragments, the JSON API, the SSE stream."""
