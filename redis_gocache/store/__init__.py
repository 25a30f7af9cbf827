"""Where cache entries live: the local directory, Redis, and an in-memory double for tests."""
