"""The development stack: embedded Redis, daphne, Celery workers and the coordinator, kept alive by one supervisor (`runstack`)."""
