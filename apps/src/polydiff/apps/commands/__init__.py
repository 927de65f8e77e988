"""One module per domain (`<domain>.py`) holding its verbs (`@verb`) and its demo stage."""
