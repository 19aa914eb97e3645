"""The control service: FastAPI app, routes, job store, job backends (Ray Jobs, local) and auth."""
