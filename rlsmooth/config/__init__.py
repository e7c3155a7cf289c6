"""Typed configuration: sections (``sections``), the agent families' bases (``families``), type
coercion (``coerce``) and config files with overrides (``yaml_files``)."""
