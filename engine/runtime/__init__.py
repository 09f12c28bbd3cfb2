"""Runtime: device and process setup, distributed launch, logging, atomic writes, malloc tuning."""
