"""The local stand-in for AWS: the emulator (moto server plus the APIs it lacks) and its services."""
