"""Training and tuning jobs behind one interface: SageMaker (`aws`) or local processes."""
