"""Config: typed schema, YAML loading with `_base_`, strict `-o` overrides."""
