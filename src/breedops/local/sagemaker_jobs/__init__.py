"""SageMaker training and tuning jobs, executed by the emulator the way SageMaker runs them."""
