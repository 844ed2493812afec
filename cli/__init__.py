"""The `llm-slo` command: loads SLO files and asks each generator for its files."""
