"""The stack's configuration: the table of every key, its checks, and the names the env contract reserves.
Imports only `catalog` below it (see CONTRIBUTING.md, "Layout"; tests/fast/test_layers.py holds the order)."""
