"""The development stack: embedded Redis, daphne and a Celery worker under one supervisor (`runstack`)."""
