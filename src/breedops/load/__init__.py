"""An open-loop load generator for the local endpoint and the local Lambda runner."""
