"""Transfers: a learned loss meta-tested on another task. A request is checked (`request_checks`)
and stored by `services.create_transfer`; a worker runs it (`worker`); pages show it (`panel`)."""
