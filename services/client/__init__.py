"""The client side of the service: the REST client, the live job view and the demo driver."""
