"""Price data: providers, stored daily bars, coverage, and the download job kind."""
