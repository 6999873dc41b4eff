"""Training and tuning jobs through the SageMaker SDK v3, against AWS or the local emulator."""
